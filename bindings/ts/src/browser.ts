// The browser entry: fetches and compiles the wasm module next to this file on first use.

import init, { WasmClient } from "../wasm/meridian_wasm.js";
import { setLoader } from "./client.js";

let loading: Promise<typeof WasmClient> | undefined;

setLoader(() => {
  loading ??= init({
    module_or_path: new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url),
  }).then(() => WasmClient);
  return loading;
});

export * from "./index.js";
