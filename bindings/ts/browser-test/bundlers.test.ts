// The package as web apps consume it: packed by `npm pack`, installed into a small app
// (bindings/ts/fixtures), built by each bundler from its npm package (Vite's dev server and
// production build, webpack 5, esbuild, Rollup), and loaded in headless Chromium against a
// real devserver: connect, join, send, receive. Each prints `bundler[<name>]: ok …`.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { Devserver } from "../test/devserver.js";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";
import { StaticServer } from "./static-server.js";

// This file runs from bindings/ts/browser-test-build/browser-test/.
const packageDir = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const fixtures = join(packageDir, "fixtures");
const outDir = join(fixtures, "out");

/** What a consumer's install must contain, or the app can't load. */
const SHIPPED = [
  "package.json",
  "LICENSE",
  "README.md",
  "dist/browser.js",
  "dist/node.js",
  "dist/index.d.ts",
  "dist/react.js",
  "dist/react.d.ts",
  "wasm/meridian_wasm.js",
  "wasm/meridian_wasm_bg.wasm",
];

/** The bundlers' APIs, as far as these builds use them (their packages live in fixtures/). */
const fromFixtures = createRequire(join(fixtures, "package.json"));
async function bundler<T>(name: string): Promise<T> {
  return (await import(pathToFileURL(fromFixtures.resolve(name)).href)) as T;
}

interface ViteApi {
  build(config: object): Promise<unknown>;
  createServer(config: object): Promise<{
    listen(): Promise<unknown>;
    close(): Promise<void>;
    resolvedUrls: { local: string[] } | null;
  }>;
}
interface EsbuildApi {
  build(options: object): Promise<unknown>;
}
interface RollupApi {
  rollup(options: object): Promise<{ write(options: object): Promise<unknown>; close(): Promise<void> }>;
}
type Plugin = (options?: object) => object;
type WebpackApi = (
  config: object,
  done: (error: Error | null, stats?: { hasErrors(): boolean; toString(o: object): string }) => void,
) => void;

let fed: Devserver | undefined;
let browser: Browser | undefined;

before(async () => {
  for (const built of ["dist/browser.js", "wasm/meridian_wasm_bg.wasm"]) {
    if (!existsSync(join(packageDir, built))) {
      throw new Error(`bindings/ts/${built} is missing: run \`cargo xtask dist web\` first`);
    }
  }
  installPackedPackage();
  rmSync(outDir, { recursive: true, force: true });
  [fed, browser] = await Promise.all([
    Devserver.start(),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 }),
  ]);
});

after(async () => {
  await Promise.allSettled([browser?.close(), fed?.stop()]);
});

/**
 * `npm pack`s the package and unpacks it into the fixtures' node_modules, as `npm install`
 * of the published tarball would: what `files` leaves out is missing here too.
 */
function installPackedPackage(): void {
  const scratch = mkdtempSync(join(tmpdir(), "meridian-pack-"));
  try {
    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--pack-destination", scratch], {
        cwd: packageDir,
        encoding: "utf8",
      }),
    ) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const [tarball] = packed;
    assert.ok(tarball, "npm pack made no tarball");
    const files = tarball.files.map((f) => f.path);
    for (const needed of SHIPPED) {
      assert.ok(files.includes(needed), `the packed package lacks ${needed}: ${files.join(", ")}`);
    }
    execFileSync("tar", ["-xzf", join(scratch, tarball.filename), "-C", scratch]);
    const installed = join(fixtures, "node_modules/@meridian/sdk");
    rmSync(installed, { recursive: true, force: true });
    cpSync(join(scratch, "package"), installed, { recursive: true });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A page of `entry` for the bundlers that don't write one. */
function writePage(dir: string, script: string, module: boolean): void {
  const type = module ? ' type="module"' : "";
  writeFileSync(
    join(dir, "index.html"),
    `<!doctype html><meta charset="utf-8"><pre id="out">loading</pre>` +
      `<script${type} src="./${script}"></script>\n`,
  );
}

interface FixtureResult {
  ok: boolean;
  error?: string;
  user?: string;
  seq?: number;
  receivedSeq?: number;
  state?: string;
  errorName?: string;
}

/** Opens the built app at `url` and checks it connected, sent and received. */
async function expectWorks(name: string, url: string): Promise<void> {
  assert.ok(browser && fed);
  const context = await browser.newContext();
  const page = await context.newPage();
  const log: string[] = [];
  page.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
  page.on("requestfailed", (r) => log.push(`[requestfailed] ${r.url()}`));
  page.on("response", (r) => {
    if (r.status() >= 400) log.push(`[${r.status()}] ${r.url()}`);
  });
  try {
    const query = new URLSearchParams({
      bundler: name,
      directory: fed.directoryUrl,
      keys: JSON.stringify(fed.federationKeys),
      token: "ana-token",
      space: "acme:general",
    });
    await page.goto(`${url}?${query.toString()}`);
    const handle = await page
      .waitForFunction(() => (window as { fixtureResult?: unknown }).fixtureResult, undefined, {
        timeout: 30_000,
      })
      .catch(() => undefined);
    const result = (await handle?.jsonValue()) as FixtureResult | undefined;
    const why = `${name}: ${JSON.stringify(result)}\n${log.join("\n")}`;
    assert.ok(result, `the ${name} app never finished\n${log.join("\n")}`);
    assert.equal(result.ok, true, why);
    assert.equal(result.user, "ana", why);
    assert.equal(result.receivedSeq, result.seq, why);
    assert.equal(result.errorName, "MeridianError", `${why}\nerror names must survive minifying`);
    console.log(`bundler[${name}]: ok user=${result.user} seq=${result.seq} state=${result.state}`);
  } finally {
    await context.close();
  }
}

/** Serves a production build and checks it. */
async function serveAndCheck(name: string, dir: string): Promise<void> {
  const server = await StaticServer.start(dir);
  try {
    await expectWorks(name, `${server.url}/index.html`);
  } finally {
    await server.close();
  }
}

test("Vite's dev server", async () => {
  const vite = await bundler<ViteApi>("vite");
  const server = await vite.createServer({
    root: fixtures,
    configFile: false,
    logLevel: "warn",
    clearScreen: false,
    server: { host: "127.0.0.1", port: 0, strictPort: false },
  });
  await server.listen();
  try {
    const base = server.resolvedUrls?.local[0];
    assert.ok(base, "vite's dev server has no URL");
    await expectWorks("vite-dev", `${base}index.html`);
  } finally {
    await server.close();
  }
});

test("a Vite production build", async () => {
  const vite = await bundler<ViteApi>("vite");
  const dir = join(outDir, "vite");
  await vite.build({
    root: fixtures,
    configFile: false,
    logLevel: "warn",
    build: { outDir: dir, emptyOutDir: true },
  });
  await serveAndCheck("vite-build", dir);
});

test("webpack 5, production mode (minified)", async () => {
  const webpack = await bundler<{ default: WebpackApi }>("webpack");
  const dir = join(outDir, "webpack");
  await new Promise<void>((done, fail) => {
    webpack.default(
      {
        mode: "production",
        context: fixtures,
        entry: "./main.js",
        output: { path: dir, filename: "main.js", clean: true },
      },
      (error, stats) => {
        if (error) fail(error);
        else if (stats?.hasErrors()) fail(new Error(stats.toString({ all: false, errors: true })));
        else done();
      },
    );
  });
  writePage(dir, "main.js", false);
  await serveAndCheck("webpack", dir);
});

test("esbuild, minified, the wasm emitted by its file loader", async () => {
  const esbuild = await bundler<EsbuildApi>("esbuild");
  const dir = join(outDir, "esbuild");
  await esbuild.build({
    entryPoints: [join(fixtures, "main-wasm-url.js")],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    outdir: dir,
    loader: { ".wasm": "file" },
    logLevel: "warning",
  });
  writePage(dir, "main-wasm-url.js", true);
  await serveAndCheck("esbuild", dir);
});

test("Rollup, the wasm emitted by @rollup/plugin-url", async () => {
  const rollup = await bundler<RollupApi>("rollup");
  const { nodeResolve } = await bundler<{ nodeResolve: Plugin }>("@rollup/plugin-node-resolve");
  const url = (await bundler<{ default: Plugin }>("@rollup/plugin-url")).default;
  const dir = join(outDir, "rollup");
  const bundle = await rollup.rollup({
    input: join(fixtures, "main-wasm-url.js"),
    plugins: [
      nodeResolve({ browser: true }),
      url({ include: ["**/*.wasm"], limit: 0, fileName: "[name]-[hash][extname]", destDir: dir }),
    ],
    onwarn: (warning: { message: string }) => console.log(`rollup warning: ${warning.message}`),
  });
  await bundle.write({ dir, format: "es" });
  await bundle.close();
  writePage(dir, "main-wasm-url.js", true);
  assert.ok(readFileSync(join(dir, "main-wasm-url.js"), "utf8").length > 0);
  await serveAndCheck("rollup", dir);
});
