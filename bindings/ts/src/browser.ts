// The browser entry: instantiates the wasm module on first use, from where the app says
// (`init({ wasm })`) or from the file shipped next to this one. Registering the runtime is
// this file's one side effect, which package.json's `sideEffects` declares so that
// bundlers keep it.

import initWasm, { WasmClient } from "../wasm/meridian_wasm.js";
import { setRuntime, type WasmSource } from "./client.js";

setRuntime(async (wasm: WasmSource | undefined) => {
  await initWasm({
    module_or_path: wasm ?? new URL("../wasm/meridian_wasm_bg.wasm", import.meta.url),
  });
  return WasmClient;
});

export * from "./index.js";
