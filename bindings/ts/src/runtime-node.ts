// How a Node (>= 20) entry instantiates its wasm build: read from the package (or the one
// given to `init({ wasm })`), with the `ws` package's WebSocket where Node has none (20).

import { readFile } from "node:fs/promises";
import type { Runtime, WasmSource } from "./client.js";
import { loadedFrom, type Glue } from "./runtime-browser.js";

/** @internal */
export function nodeRuntime(glue: Glue, wasmUrl: URL): Runtime {
  return async (wasm: WasmSource | undefined) => {
    if (typeof globalThis.WebSocket === "undefined") {
      const ws = await import("ws");
      (globalThis as { WebSocket?: unknown }).WebSocket = ws.WebSocket;
    }
    if (wasm === undefined && glue.initSync) {
      glue.initSync({ module: await readFile(wasmUrl) });
    } else {
      await glue.init({ module_or_path: wasm ?? wasmUrl });
    }
    return loadedFrom(glue);
  };
}
