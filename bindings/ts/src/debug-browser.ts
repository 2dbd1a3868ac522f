// `@meridian/sdk/debug` in browsers: the same API on the wasm build that keeps the core's
// logs (`logLevel` / `logHandler` in `Client.connect`). Larger than the default build:
// for development, or for an app that ships logs on purpose.

import init, { WasmClient, setLogHandler } from "../wasm-debug/meridian_wasm.js";
import { setRuntime } from "./client.js";
import { browserRuntime } from "./runtime-browser.js";

setRuntime(
  browserRuntime(
    { init, WasmClient, setLogHandler },
    new URL("../wasm-debug/meridian_wasm_bg.wasm", import.meta.url),
  ),
);

export * from "./index.js";
