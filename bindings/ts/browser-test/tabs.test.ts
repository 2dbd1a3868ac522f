// Several tabs of one user and origin in headless Chromium against a real devserver: one
// context (one IndexedDB, one set of locks), three pages. Each page sends; the tab that
// leads is closed mid-stream; the others take over. Every message must be stored once in
// the region and delivered once, in order, to each remaining tab. Run with the Web Locks
// API and again without it (the localStorage lease that replaces it).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { Devserver } from "../test/devserver.js";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";
import { StaticServer } from "./static-server.js";

// This file runs from bindings/ts/browser-test-build/browser-test/.
const packageDir = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const repoRoot = resolve(packageDir, "../..");
const SPACE = "acme:general";

let fed: Devserver | undefined;
let server: StaticServer | undefined;
let browser: Browser | undefined;

before(async () => {
  if (!existsSync(resolve(packageDir, "dist/tabs.js"))) {
    throw new Error("bindings/ts/dist/tabs.js is missing: run `cargo xtask dist web` first");
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

interface Received {
  readonly seq: number;
  readonly body: string;
}

/** What tab.js exposes as `window.meridianTab`. */
interface TabWindow {
  readonly meridianTab: Promise<{
    readonly received: Received[];
    leading(): boolean;
    send(text: string): Promise<void>;
    settled(): Promise<number>;
    history(): Promise<Array<{ body: string }>>;
    disconnect(): Promise<void>;
  }>;
}

class Tab {
  readonly log: string[] = [];

  constructor(
    readonly name: string,
    readonly page: Page,
  ) {
    page.on("console", (m) => this.log.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => this.log.push(`[pageerror] ${e.message}`));
  }

  static async open(context: BrowserContext, name: string): Promise<Tab> {
    const tab = new Tab(name, await context.newPage());
    const query = new URLSearchParams({
      directory: fed!.directoryUrl,
      keys: JSON.stringify(fed!.federationKeys),
      user: "sam",
      space: SPACE,
    });
    await tab.page.goto(`${server!.url}/bindings/ts/browser-test/tabs/index.html?${query}`);
    await tab.page.evaluate(() => (window as unknown as TabWindow).meridianTab.then(() => true));
    return tab;
  }

  leading(): Promise<boolean> {
    return this.page.evaluate(() => (window as unknown as TabWindow).meridianTab.then((t) => t.leading()));
  }

  send(text: string): Promise<void> {
    return this.page.evaluate(
      (text) => (window as unknown as TabWindow).meridianTab.then((t) => t.send(text)),
      text,
    );
  }

  received(): Promise<Received[]> {
    return this.page.evaluate(() =>
      (window as unknown as TabWindow).meridianTab.then((t) => t.received.slice()),
    );
  }

  settled(): Promise<number> {
    return this.page.evaluate(() => (window as unknown as TabWindow).meridianTab.then((t) => t.settled()));
  }

  disconnect(): Promise<void> {
    return this.page.evaluate(() => (window as unknown as TabWindow).meridianTab.then((t) => t.disconnect()));
  }

  history(): Promise<string[]> {
    return this.page.evaluate(() =>
      (window as unknown as TabWindow).meridianTab.then(async (t) => (await t.history()).map((m) => m.body)),
    );
  }
}

/** Each of `expected` exactly once, and seqs strictly increasing. */
function assertOnceInOrder(tab: string, got: Received[], expected: string[]): void {
  const mine = got.filter((m) => expected.includes(m.body));
  const counts = new Map<string, number>();
  for (const m of mine) {
    counts.set(m.body, (counts.get(m.body) ?? 0) + 1);
  }
  const wrong = expected.filter((body) => counts.get(body) !== 1);
  assert.deepEqual(
    wrong.map((body) => `${body} x${counts.get(body) ?? 0}`),
    [],
    `${tab}: every message once`,
  );
  for (let i = 1; i < got.length; i++) {
    assert.ok(got[i]!.seq > got[i - 1]!.seq, `${tab}: seqs in order: ${JSON.stringify(got)}`);
  }
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      assert.fail(`not within ${timeoutMs} ms: ${what}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** How the leading tab goes: its page closed, or its client disconnected by the app. */
type Going = "close" | "disconnect";

async function leaderGoesMidStream(label: string, withoutLocks: boolean, going: Going): Promise<void> {
  const context = await browser!.newContext();
  if (withoutLocks) {
    // An origin without the Web Locks API (an insecure one, an older browser).
    await context.addInitScript(() => {
      delete (Navigator.prototype as { locks?: unknown }).locks;
    });
  }
  const tabs: Tab[] = [];
  try {
    for (const name of ["first", "second", "third"]) {
      tabs.push(await Tab.open(context, name));
    }
    const [first, second, third] = tabs as [Tab, Tab, Tab];
    if (withoutLocks) {
      assert.equal(await first.page.evaluate(() => "locks" in navigator), false);
    }
    // The first tab took the lock; the others follow it.
    await eventually("the first tab leads", () => first.leading());
    assert.deepEqual([await second.leading(), await third.leading()], [false, false]);

    const sent: string[] = [];
    const send = async (tab: Tab, i: number): Promise<void> => {
      const text = `${label} ${tab.name} ${i}`;
      await tab.send(text);
      sent.push(text);
    };
    for (let i = 1; i <= 3; i++) {
      await Promise.all(tabs.map((tab) => send(tab, i)));
    }
    // The leader writes its cursors at most once a second: after this pause it has, and the
    // next round is delivered to every tab but not yet in the leader's cursors when it goes,
    // so the next leader replays it.
    await new Promise((r) => setTimeout(r, 1500));
    await Promise.all(tabs.map((tab) => send(tab, 4)));
    await Promise.all(
      tabs.map((tab) =>
        eventually(`${tab.name} hears round 4`, async () => {
          const bodies = new Set((await tab.received()).map((m) => m.body));
          return sent.every((text) => bodies.has(text));
        }),
      ),
    );
    // The leader's last send is in the outbox, maybe not in the region yet, when it goes.
    await send(first, 5);
    assertOnceInOrder("first", await first.received(), sent.slice(0, -1));
    if (going === "close") {
      await first.page.close();
    } else {
      await first.disconnect();
    }

    // Sends made while no tab leads wait for the next leader.
    for (let i = 5; i <= 8; i++) {
      await Promise.all([send(second, i), send(third, i)]);
    }
    await eventually(
      "one of the remaining tabs leads",
      async () => (await second.leading()) !== (await third.leading()),
    );
    for (const tab of [second, third]) {
      await eventually(`${tab.name} hears all ${sent.length} messages`, async () => {
        const bodies = new Set((await tab.received()).map((m) => m.body));
        return sent.every((text) => bodies.has(text));
      });
    }
    // A moment for a late duplicate to show up, then each tab's view is checked.
    await new Promise((r) => setTimeout(r, 500));
    for (const tab of [second, third]) {
      assertOnceInOrder(tab.name, await tab.received(), sent);
      assert.equal(await tab.settled(), 8, `${tab.name}: each of its sends acked`);
    }
    const stored = await second.history();
    assert.deepEqual(
      sent.filter((text) => stored.filter((body) => body === text).length !== 1),
      [],
      "the region stored every message once",
    );
  } catch (thrown) {
    for (const tab of tabs) {
      console.log(`--- ${tab.name}'s console\n${tab.log.join("\n")}`);
    }
    throw thrown;
  } finally {
    await context.close();
  }
}

test("three tabs share one outbox; the leader closes mid-stream; nothing lost or doubled", { timeout: 60_000 }, () =>
  leaderGoesMidStream("locks", false, "close"),
);

test("the same without the Web Locks API: the localStorage lease hands over", { timeout: 60_000 }, () =>
  leaderGoesMidStream("lease", true, "close"),
);

test("a leader whose app disconnects hands over the same way", { timeout: 60_000 }, () =>
  leaderGoesMidStream("disconnect", false, "disconnect"),
);
