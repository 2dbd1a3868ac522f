// Starts the reference federation (the devserver binary) on loopback for a test file.
// Shared by the tests of bindings/ts and bindings/react-native: it imports nothing from
// either package, so it compiles as ES module and as CommonJS alike.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";

/** A federation signing key, as every binding's `FederationKey` has it. */
export interface TrustedKey {
  id: string;
  publicKey: string;
}

/** The binary `cargo build -p devserver` makes; `MERIDIAN_DEVSERVER` overrides it. */
const binary = process.env["MERIDIAN_DEVSERVER"] ?? join(workspaceRoot(), "target/debug/devserver");

/** The cargo workspace holding the current folder: the nearest one with a Cargo.lock. */
function workspaceRoot(): string {
  let dir = process.cwd();
  while (!existsSync(join(dir, "Cargo.lock"))) {
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`no Cargo.lock above ${process.cwd()}: set MERIDIAN_DEVSERVER`);
    }
    dir = parent;
  }
  return dir;
}

interface Ready {
  directory_url: string;
  regions: Record<string, string>;
  federation_keys: Array<{ id: string; public_key: string }>;
}

export class Devserver {
  readonly directoryUrl: string;
  readonly federationKeys: TrustedKey[];
  readonly #ports: string[];
  readonly #dataDir: string;
  #child: ChildProcess;

  private constructor(ready: Ready, child: ChildProcess, dataDir: string) {
    this.directoryUrl = ready.directory_url;
    this.federationKeys = ready.federation_keys.map((k) => ({ id: k.id, publicKey: k.public_key }));
    const port = (url: string): string => new URL(url).port;
    this.#ports = [
      "--port",
      `directory=${port(ready.directory_url)}`,
      ...Object.entries(ready.regions).flatMap(([id, url]) => ["--port", `${id}=${port(url)}`]),
    ];
    this.#child = child;
    this.#dataDir = dataDir;
  }

  /** A fresh federation on ports the OS picks, keeping its data in a temporary folder. */
  static async start(): Promise<Devserver> {
    const dataDir = mkdtempSync(join(tmpdir(), "meridian-ts-"));
    const [ready, child] = await launch(["--ephemeral-ports", "--data-dir", dataDir]);
    return new Devserver(ready, child, dataDir);
  }

  /** Kills the process (as a crash would) and starts it again on the same ports and data. */
  async restart(downtimeMs = 0): Promise<void> {
    await this.#kill();
    await new Promise((r) => setTimeout(r, downtimeMs));
    const [, child] = await launch([...this.#ports, "--data-dir", this.#dataDir]);
    this.#child = child;
  }

  async stop(): Promise<void> {
    await this.#kill();
    rmSync(this.#dataDir, { recursive: true, force: true });
  }

  #kill(): Promise<void> {
    const child = this.#child;
    if (child.exitCode !== null || child.signalCode !== null) {
      return Promise.resolve();
    }
    return new Promise((resolveExit) => {
      child.once("exit", () => resolveExit());
      child.kill("SIGKILL");
    });
  }
}

function launch(args: string[]): Promise<[Ready, ChildProcess]> {
  const child = spawn(binary, ["--ready-line", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: process.env["RUST_LOG"] ?? "warn" },
  });
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error("the devserver did not start in 20 s")), 20_000);
    child.once("error", (e) => reject(new Error(`cannot start ${binary}: ${e.message}`)));
    child.once("exit", (code) => reject(new Error(`the devserver exited (${code}) before it was ready`)));
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (line.startsWith("READY ")) {
        clearTimeout(timer);
        resolveReady([JSON.parse(line.slice("READY ".length)) as Ready, child]);
      }
    });
  });
}
