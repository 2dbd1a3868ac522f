// The web demo (examples/web, plain JavaScript on the package) in headless Chromium
// against a real devserver: the chat scenario of chat.ts.

import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { Devserver } from "../test/devserver.js";
import { chatAcrossRegions } from "./chat.js";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";
import { StaticServer } from "./static-server.js";

// This file runs from bindings/ts/browser-test-build/browser-test/.
const packageDir = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const repoRoot = resolve(packageDir, "../..");

let fed: Devserver | undefined;
let server: StaticServer | undefined;
let browser: Browser | undefined;

before(async () => {
  for (const built of ["dist/browser.js", "wasm/meridian_wasm.js", "wasm/meridian_wasm_bg.wasm"]) {
    if (!existsSync(resolve(packageDir, built))) {
      throw new Error(`bindings/ts/${built} is missing: run \`cargo xtask dist web\` first`);
    }
  }
  [fed, server, browser] = await Promise.all([
    Devserver.start(),
    StaticServer.start(repoRoot),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 }),
  ]);
});

after(async () => {
  await Promise.allSettled([browser?.close(), server?.close(), fed?.stop()]);
});

test(
  "two users in two regions chat through the web demo, offline and back, nothing lost",
  { timeout: 50_000 },
  async (t) => {
    const url = `${server!.url}/examples/web/index.html`;
    await chatAcrossRegions(t, { name: "web-demo", url, browser: browser!, fed: fed! });
  },
);
