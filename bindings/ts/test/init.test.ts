// `init({ wasm })`: an app that serves the wasm itself hands it in. Its own process (node's
// test runner runs each file apart), so this file's first call is the first load.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { Client, InternalError, MeridianError, init } from "@meridian/sdk";
import { Devserver } from "./devserver.js";

let fed: Devserver;

before(async () => {
  fed = await Devserver.start();
});

after(async () => {
  await fed.stop();
});

test("a module that is not wasm is refused with a typed error, and a good one loads after it", async () => {
  await assert.rejects(init({ wasm: new Uint8Array([1, 2, 3, 4]) }), (e: unknown) => {
    assert.ok(e instanceof InternalError, `got ${String(e)}`);
    assert.equal(e.name, "InternalError");
    assert.match(e.message, /could not be loaded/);
    assert.ok(e.cause !== undefined, "the platform's error is kept as the cause");
    return true;
  });
  const bytes = readFileSync(new URL("../../wasm/meridian_wasm_bg.wasm", import.meta.url));
  await init({ wasm: bytes });
  // Loaded once: a later call with another source shares the first result.
  await init({ wasm: new Uint8Array([0]) });
  const client = await Client.connect({
    directoryUrl: fed.directoryUrl,
    token: "ana-token",
    federationKeys: fed.federationKeys,
  });
  assert.equal(client.session.user, "ana");
  await client.disconnect();
});

test("errors carry their names and causes as plain JavaScript errors do", () => {
  const cause = new TypeError("underneath");
  const error = new MeridianError("timeout", "took too long", { cause });
  assert.equal(error.name, "MeridianError");
  assert.equal(error.cause, cause);
  assert.equal(error.transient, true);
  assert.equal(new InternalError("x").name, "InternalError");
  assert.equal(String(new InternalError("x")), "InternalError: x");
});
