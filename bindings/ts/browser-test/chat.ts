// The chat scenario both web demos are held to (examples/web on the package, and
// examples/web-react on its React hooks), driven through the DOM only, as a user would.
// The pages share their markup's test ids: status (data-state), whoami, space-region,
// message (data-seq, data-sender, message-body, optional data-source), pending-item
// (data-status, pending-body), input, send, error.

import assert from "node:assert/strict";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { Devserver } from "../test/devserver.js";

// This file runs from bindings/ts/browser-test-build/browser-test/.
const packageDir = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
/** Where screenshots and page logs go. */
export const resultsDir = resolve(packageDir, "test-results");
mkdirSync(resultsDir, { recursive: true });

/** A demo served somewhere, and what its pages need. */
export interface DemoSite {
  /** Names its screenshots: `<name>-<user>.png`. */
  readonly name: string;
  /** The page's URL, without its query. */
  readonly url: string;
  readonly browser: Browser;
  readonly fed: Devserver;
}

/** What the demo page exposes, for a test to wait on. */
interface DemoWindow {
  readonly meridianDemo?: { readonly ready: Promise<{ user: string; space: string }> };
}

/** A message as a page shows it, e.g. `3 sam: hello` (with ` (history)` if not delivered live). */
type Line = string;

/** One user's demo page, in its own browser context (its own IndexedDB, its own network). */
export class ChatPage {
  /** The page's console: the demo logs every SDK event there. */
  readonly log: string[] = [];

  private constructor(
    readonly demo: string,
    readonly user: string,
    readonly context: BrowserContext,
    readonly page: Page,
  ) {
    const started = Date.now();
    const stamp = (): string => `+${String(Date.now() - started).padStart(6)} ms`;
    page.on("console", (m) => this.log.push(`${stamp()} [${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => this.log.push(`${stamp()} [pageerror] ${e.message}`));
    page.on("requestfailed", (r) =>
      this.log.push(`${stamp()} [requestfailed] ${r.url()} ${r.failure()?.errorText ?? ""}`),
    );
  }

  /** Opens `url` (a demo page) as `user` talking to `peer`, in a context of its own. */
  static async open(where: DemoSite, user: string, peer: string): Promise<ChatPage> {
    const context = await where.browser.newContext({ viewport: { width: 900, height: 900 } });
    const page = await context.newPage();
    const chat = new ChatPage(where.name, user, context, page);
    const query = new URLSearchParams({
      directory: where.fed.directoryUrl,
      keys: JSON.stringify(where.fed.federationKeys),
      user,
      peer,
    });
    await page.goto(`${where.url}?${query.toString()}`);
    return chat;
  }

  /** Waits until the page has connected, opened the DM and joined it. */
  async ready(): Promise<{ user: string; space: string }> {
    await this.page.waitForFunction(() => (window as DemoWindow).meridianDemo !== undefined);
    return this.page.evaluate(() => (window as DemoWindow).meridianDemo!.ready);
  }

  status(): Promise<string | null> {
    return this.page.getByTestId("status").getAttribute("data-state");
  }

  async waitStatus(state: string, timeoutMs = 10_000): Promise<void> {
    try {
      await this.page
        .locator(`[data-testid="status"][data-state="${state}"]`)
        .waitFor({ timeout: timeoutMs });
    } catch {
      assert.fail(
        `${this.user}'s page did not show "${state}" within ${timeoutMs} ms: it shows ` +
          `"${await this.status()}" (${await this.page.getByTestId("status").textContent()})`,
      );
    }
  }

  /** Types `text` into the composer and clicks Send. */
  async send(text: string): Promise<void> {
    const input = this.page.getByTestId("input");
    await input.fill(text);
    await this.page.getByTestId("send").click();
    // The page clears the input once it has taken the text.
    await this.page.waitForFunction(
      () => (document.querySelector('[data-testid="input"]') as HTMLInputElement).value === "",
    );
  }

  /** The message list, top to bottom. */
  messages(): Promise<Line[]> {
    return this.page.$$eval('[data-testid="message"]', (items) =>
      items.map((item) => {
        const el = item as HTMLElement;
        const body = el.querySelector('[data-testid="message-body"]')?.textContent ?? "";
        const from = el.dataset["source"];
        const source = from === undefined || from === "live" ? "" : ` (${from})`;
        return `${el.dataset["seq"]} ${el.dataset["sender"]}: ${body}${source}`;
      }),
    );
  }

  /** Waits until the list has as many messages as `expected`, then checks it is exactly that. */
  async expectMessages(expected: readonly Line[], timeoutMs = 15_000): Promise<void> {
    await this.page
      .waitForFunction(
        (n) => document.querySelectorAll('[data-testid="message"]').length >= n,
        expected.length,
        { timeout: timeoutMs, polling: 50 },
      )
      .catch(() => undefined); // the comparison below says what is there instead
    assert.deepEqual(await this.messages(), expected, `the messages on ${this.user}'s page`);
  }

  /** The pending sends listed, as `body (status)`. */
  pending(): Promise<string[]> {
    return this.page.$$eval('[data-testid="pending-item"]', (items) =>
      items.map(
        (item) =>
          `${item.querySelector('[data-testid="pending-body"]')?.textContent ?? ""} ` +
          `(${(item as HTMLElement).dataset["status"]})`,
      ),
    );
  }

  /** Waits until the pending list is `expected` (as `body (status)`), then checks it. */
  async expectPending(expected: readonly string[], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && JSON.stringify(await this.pending()) !== JSON.stringify(expected)) {
      await this.page.waitForTimeout(50);
    }
    assert.deepEqual(await this.pending(), expected, `${this.user}'s pending sends`);
  }

  async waitPendingCount(count: number, timeoutMs = 10_000): Promise<void> {
    await this.page
      .waitForFunction(
        (n) => document.querySelectorAll('[data-testid="pending-item"]').length === n,
        count,
        { timeout: timeoutMs, polling: 50 },
      )
      .catch(() => undefined);
    assert.equal(
      (await this.pending()).length,
      count,
      `${this.user}'s pending sends: ${JSON.stringify(await this.pending())}`,
    );
  }

  async screenshot(suffix = ""): Promise<string> {
    const path = resolve(resultsDir, `${this.demo}-${this.user}${suffix}.png`);
    await this.page.screenshot({ path, fullPage: true });
    return path;
  }

  saveLog(): string {
    const path = resolve(resultsDir, `${this.demo}-${this.user}.log`);
    writeFileSync(path, `${this.log.join("\n")}\n`);
    return path;
  }
}

const line = (seq: number, sender: string, body: string): Line => `${seq} ${sender}: ${body}`;

/**
 * Two users homed in different regions talk in a DM through a demo page, one of them goes
 * offline and comes back, and every message shows on both pages exactly once, in order.
 * Returns the screenshots it took.
 */
export async function chatAcrossRegions(t: TestContext, where: DemoSite): Promise<string[]> {
  const started = Date.now();
  const phase = (name: string): void =>
    t.diagnostic(`${String(Date.now() - started).padStart(6)} ms  ${name}`);
  const [ana, sam] = await Promise.all([
    ChatPage.open(where, "ana", "sam"),
    ChatPage.open(where, "sam", "ana"),
  ]);
  try {
    // Both connect: ana is homed in eu-west, sam in us-east; their DM lives in eu-west.
    const [anaReady, samReady] = await Promise.all([ana.ready(), sam.ready()]);
    assert.equal(anaReady.space, samReady.space, "both pages show the same DM");
    await Promise.all([ana.waitStatus("connected"), sam.waitStatus("connected")]);
    assert.match(await ana.page.getByTestId("whoami").innerText(), /home region eu-west/);
    assert.match(await sam.page.getByTestId("whoami").innerText(), /home region us-east/);
    assert.match(await ana.page.getByTestId("space-region").innerText(), /^eu-west/);
    phase("both pages connected");

    // Both ways, one after the other.
    const expected: Line[] = [];
    const say = async (from: ChatPage, text: string): Promise<void> => {
      await from.send(text);
      expected.push(line(expected.length + 1, from.user, text));
      await Promise.all([ana.expectMessages(expected), sam.expectMessages(expected)]);
    };
    await say(ana, "hi sam, ana here from Dublin");
    await say(sam, "hello ana, sam in Virginia");
    await say(ana, "how is the weather?");
    await say(sam, "sunny");
    phase("exchanged 4 messages both ways");

    // Ana's network goes away (the browser fires `offline`, which the SDK listens to).
    await ana.context.setOffline(true);
    await ana.waitStatus("offline");
    phase("ana's page shows offline");
    const beforeOffline = [...expected];

    const fromSam = ["are you there?", "message 2 while you are away", "message 3", "message 4"];
    for (const text of fromSam) {
      await sam.send(text);
    }
    for (const text of fromSam) {
      expected.push(line(expected.length + 1, "sam", text));
    }
    await sam.expectMessages(expected);
    phase("sam sent 4 messages, stored by eu-west");

    const fromAna = ["typed offline 1", "typed offline 2"];
    for (const text of fromAna) {
      await ana.send(text);
    }
    await ana.expectPending(fromAna.map((text) => `${text} (queued)`));
    // Still offline a moment later: nothing went out, nothing came in.
    await ana.page.waitForTimeout(500);
    assert.equal(await ana.status(), "offline");
    assert.equal((await ana.pending()).length, 2, "ana's offline sends stay pending while offline");
    assert.deepEqual(await sam.messages(), expected, "sam's page has nothing ana typed offline");
    const offlineScreenshot = await ana.screenshot("-offline");
    const heardOffline = (await ana.messages()).length - beforeOffline.length;
    phase(`ana sent 2 while offline (pending); she saw ${heardOffline} of sam's 4 while offline`);
    assert.deepEqual(await ana.messages(), beforeOffline, "ana's page heard nothing while offline");

    // Back online: sam's messages arrive, ana's go out, each once, in order.
    await ana.context.setOffline(false);
    for (const text of fromAna) {
      expected.push(line(expected.length + 1, "ana", text));
    }
    await ana.waitStatus("connected", 15_000);
    phase("ana's page connected again");
    await Promise.all([ana.expectMessages(expected), sam.expectMessages(expected)]);
    await ana.waitPendingCount(0);
    await sam.waitPendingCount(0);
    phase("both pages show all 10 messages; ana's pending sends are gone");

    // And the DM still flows live both ways.
    await say(sam, "welcome back");
    await say(ana, "thanks!");
    // No late duplicate or stray message turns up.
    await ana.page.waitForTimeout(500);
    assert.deepEqual(await ana.messages(), expected, "ana's page, settled");
    assert.deepEqual(await sam.messages(), expected, "sam's page, settled");
    assert.equal(await ana.page.getByTestId("error").innerText(), "");
    assert.equal(await sam.page.getByTestId("error").innerText(), "");
    phase("12 messages on both pages, each once, in order");

    const screenshots = [await ana.screenshot(), await sam.screenshot(), offlineScreenshot];
    for (const path of screenshots) {
      assert.ok(statSync(path).size > 0, `${path} is not empty`);
    }
    return screenshots;
  } catch (failure) {
    // What the pages saw, to tell an SDK problem from a test problem.
    for (const demo of [ana, sam]) {
      await demo.screenshot().catch(() => undefined);
      process.stderr.write(`\n--- ${demo.user}'s page console (${demo.saveLog()}) ---\n`);
      process.stderr.write(`${demo.log.slice(-120).join("\n")}\n`);
    }
    throw failure;
  } finally {
    for (const demo of [ana, sam]) {
      demo.saveLog();
    }
    await Promise.allSettled([ana.context.close(), sam.context.close()]);
  }
}
