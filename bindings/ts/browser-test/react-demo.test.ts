// The React demo (examples/web-react, on @meridian/sdk/react), built by Vite from its own
// package and served as a production build, held to the same chat scenario as the plain
// web demo: two users in two regions, one goes offline and comes back, nothing lost.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { Devserver } from "../test/devserver.js";
import { chatAcrossRegions } from "./chat.js";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";
import { StaticServer } from "./static-server.js";

// This file runs from bindings/ts/browser-test-build/browser-test/.
const packageDir = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const example = resolve(packageDir, "../../examples/web-react");

let fed: Devserver | undefined;
let server: StaticServer | undefined;
let browser: Browser | undefined;

before(async () => {
  assert.ok(
    existsSync(join(example, "node_modules/vite")),
    "examples/web-react has no node_modules: `cargo xtask setup` installs them",
  );
  const fromExample = createRequire(join(example, "package.json"));
  const vite = (await import(pathToFileURL(fromExample.resolve("vite")).href)) as {
    build(config: object): Promise<unknown>;
  };
  // Its own vite.config.js, as `npm run build` in examples/web-react would.
  await vite.build({ root: example, logLevel: "warn" });
  [fed, server, browser] = await Promise.all([
    Devserver.start(),
    StaticServer.start(join(example, "dist")),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 }),
  ]);
});

after(async () => {
  await Promise.allSettled([browser?.close(), server?.close(), fed?.stop()]);
});

test(
  "two users in two regions chat through the React demo, offline and back, nothing lost",
  { timeout: 60_000 },
  async (t) => {
    const shots = await chatAcrossRegions(t, {
      name: "react-demo",
      url: `${server!.url}/index.html`,
      browser: browser!,
      fed: fed!,
    });
    t.diagnostic(`screenshots: ${shots.join(", ")}`);
  },
);
