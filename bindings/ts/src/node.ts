// The Node (>= 20) entry: the default wasm build (logs compiled out).

import init, { WasmClient, initSync } from "../wasm/meridian_wasm.js";
import { setRuntime } from "./client.js";
import { nodeRuntime } from "./runtime-node.js";

setRuntime(
  nodeRuntime(
    { init, initSync, WasmClient },
    new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url),
  ),
);

export * from "./index.js";
