// How a browser entry instantiates its wasm build: from where the app says
// (`init({ wasm })`) or from the file shipped next to the glue.

import type { WasmClient } from "../wasm/meridian_wasm.js";
import type { Loaded, Runtime, WasmSource } from "./client.js";

/** What wasm-bindgen's glue of either build offers. */
export interface Glue {
  readonly init: (options: { module_or_path: WasmSource | URL }) => Promise<unknown>;
  readonly initSync?: (options: { module: BufferSource }) => unknown;
  readonly WasmClient: typeof WasmClient;
  readonly setLogHandler?: Loaded["setLogHandler"];
}

/** @internal */
export function browserRuntime(glue: Glue, wasmUrl: URL): Runtime {
  return async (wasm: WasmSource | undefined) => {
    await glue.init({ module_or_path: wasm ?? wasmUrl });
    return loadedFrom(glue);
  };
}

/** @internal */
export function loadedFrom(glue: Glue): Loaded {
  return glue.setLogHandler
    ? { Client: glue.WasmClient, setLogHandler: glue.setLogHandler }
    : { Client: glue.WasmClient };
}
