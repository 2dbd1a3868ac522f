// The API the Node tests exercise is the API an app gets: the declarations tsc emits for the
// N-API bindings (build-node/src/generated, what client.test.ts runs) and for the JSI
// bindings the turbo module ships (src/generated) are the same, line for line.
// `npm test` emits both before running this.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

/** Emitted files, from this file's place in build-node/out/react-native/test/. */
const emitted = (path: string): string =>
  readFileSync(fileURLToPath(new URL(`../../../${path}`, import.meta.url)), "utf8");

test("the N-API bindings declare exactly the API of the JSI bindings", () => {
  const jsi = emitted("jsi/generated/meridian_ffi.d.ts");
  const napi = emitted("out/react-native/build-node/src/generated/meridian_ffi.d.ts");
  assert.ok(jsi.includes("export declare class MeridianClient"), "the JSI declarations are there");
  assert.ok(jsi.includes("export declare class ClientBuilder"), "ClientBuilder is declared");
  // On a difference, assert prints the diff of the two texts.
  assert.equal(napi, jsi);
});
