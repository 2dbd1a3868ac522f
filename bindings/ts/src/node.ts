// The Node (>= 20) entry: loads the wasm module from disk, and gives runtimes without a
// global WebSocket (Node 20) the `ws` package's implementation of it.

import { readFile } from "node:fs/promises";
import { WasmClient, initSync } from "../wasm/meridian_wasm.js";
import { setLoader } from "./client.js";

let loading: Promise<typeof WasmClient> | undefined;

async function load(): Promise<typeof WasmClient> {
  if (typeof globalThis.WebSocket === "undefined") {
    const ws = await import("ws");
    (globalThis as { WebSocket?: unknown }).WebSocket = ws.WebSocket;
  }
  const bytes = await readFile(new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url));
  initSync({ module: bytes });
  return WasmClient;
}

setLoader(() => {
  loading ??= load();
  return loading;
});

export * from "./index.js";
