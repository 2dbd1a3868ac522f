// The Node (>= 20) entry: reads the wasm module from the package (or takes the one given
// to `init({ wasm })`), and gives runtimes without a global WebSocket (Node 20) the `ws`
// package's implementation of it.

import { readFile } from "node:fs/promises";
import initWasm, { WasmClient, initSync } from "../wasm/meridian_wasm.js";
import { setRuntime, type WasmSource } from "./client.js";

setRuntime(async (wasm: WasmSource | undefined) => {
  if (typeof globalThis.WebSocket === "undefined") {
    const ws = await import("ws");
    (globalThis as { WebSocket?: unknown }).WebSocket = ws.WebSocket;
  }
  if (wasm === undefined) {
    initSync({ module: await readFile(new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url)) });
  } else {
    await initWasm({ module_or_path: wasm });
  }
  return WasmClient;
});

export * from "./index.js";
