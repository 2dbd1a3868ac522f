// The browser entry: registers how to load the default wasm build (logs compiled out),
// this file's one side effect, which package.json's `sideEffects` declares so that
// bundlers keep it.

import init, { WasmClient } from "../wasm/meridian_wasm.js";
import { setRuntime } from "./client.js";
import { browserRuntime } from "./runtime-browser.js";

setRuntime(
  browserRuntime({ init, WasmClient }, new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url)),
);

export * from "./index.js";
