// `@meridian/sdk/debug` in Node: the wasm build that keeps the core's logs.

import init, { WasmClient, initSync, setLogHandler } from "../wasm-debug/meridian_wasm.js";
import { setRuntime } from "./client.js";
import { nodeRuntime } from "./runtime-node.js";

setRuntime(
  nodeRuntime(
    { init, initSync, WasmClient, setLogHandler },
    new URL("../wasm-debug/meridian_wasm_bg.wasm", import.meta.url),
  ),
);

export * from "./index.js";
