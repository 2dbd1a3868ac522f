// The React Native package's TypeScript API, for real, in Node: the bindings uniffi-bindgen-
// react-native generates (the N-API flavour of the same generator, loading the native
// library through @ubjs/node) and the helpers of src/meridian.ts, against a real devserver
// on loopback. api.test.ts checks that this API is the one the turbo module ships.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import "../build-node/src/generated/index.js";
import {
  ConnectionState,
  Event,
  MeridianError,
  SpaceKind,
  setLogHandler,
  type AppStore,
  type LogEntry,
  type Message,
  type MeridianClientLike,
  type StoreRecord,
} from "../build-node/src/generated/meridian_ffi.js";
import { connectClient, errorCode, events, type EventStream } from "../build-node/src/meridian.js";
import { Devserver } from "../../ts/test/devserver.js";

const GENERAL = "acme:general";
const LAUNCH = "globex:launch";

let fed: Devserver;
/** Every client a test connected, disconnected when it ends however it ends. */
const open = new Set<MeridianClientLike>();

before(async () => {
  fed = await Devserver.start();
});

after(async () => {
  await closeAll();
  await fed.stop();
});

async function connect(user: string, store?: AppStore): Promise<MeridianClientLike> {
  const client = await connectClient({
    directoryUrl: fed.directoryUrl,
    token: `${user}-token`,
    federationKeys: fed.federationKeys,
    ...(store === undefined ? {} : { store }),
  });
  open.add(client);
  return client;
}

async function close(client: MeridianClientLike): Promise<void> {
  open.delete(client);
  await client.disconnect();
}

async function closeAll(): Promise<void> {
  for (const client of [...open]) {
    await close(client).catch(() => undefined);
  }
}

/** What a client hears, from when the inbox is made. */
class Inbox {
  readonly #stream: EventStream;
  readonly #heard: string[] = [];

  constructor(
    readonly who: string,
    client: MeridianClientLike,
  ) {
    this.#stream = events(client);
  }

  /** The stream's `next()` still unanswered when a wait timed out: the next wait takes it. */
  #pending: Promise<IteratorResult<Event>> | undefined;

  async #next(deadline: number): Promise<Event | "timeout"> {
    const left = Math.max(deadline - Date.now(), 0);
    const pending = this.#pending ?? this.#stream.next();
    this.#pending = pending;
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      pending,
      new Promise<"timeout">((r) => {
        timer = setTimeout(() => r("timeout"), left);
      }),
    ]);
    clearTimeout(timer);
    if (next === "timeout") {
      return next;
    }
    this.#pending = undefined;
    if (next.done === true) {
      throw new Error(`${this.who}'s events ended; heard: ${this.#heard.join(", ")}`);
    }
    this.#heard.push(next.value.tag);
    return next.value;
  }

  /** The next `count` messages that match, failing after `timeoutMs`. */
  async messages(count: number, match: (m: Message) => boolean, timeoutMs = 20_000): Promise<Message[]> {
    const found: Message[] = [];
    const deadline = Date.now() + timeoutMs;
    while (found.length < count) {
      const event = await this.#next(deadline);
      if (event === "timeout") {
        throw new Error(`${this.who} heard ${found.length} of ${count} messages in ${timeoutMs} ms`);
      }
      if (Event.MessageReceived.instanceOf(event) && match(event.inner.message)) {
        found.push(event.inner.message);
      }
    }
    return found;
  }

  /** Fails when a matching message arrives within `waitMs`. */
  async expectNone(match: (m: Message) => boolean, waitMs = 1_000): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const event = await this.#next(deadline);
      if (event === "timeout") {
        return;
      }
      if (Event.MessageReceived.instanceOf(event) && match(event.inner.message)) {
        throw new Error(`${this.who} heard an unexpected message: ${event.inner.message.id}`);
      }
    }
  }

  close(): void {
    this.#stream.close();
  }
}

/** A store of the app's: records in a Map, as an app with its own database would pass. */
class MapStore implements AppStore {
  readonly records = new Map<string, ArrayBuffer>();

  put(namespace: string, key: string, value: ArrayBuffer): void {
    this.records.set(`${namespace}/${key}`, value.slice(0));
  }

  delete_(namespace: string, key: string): void {
    this.records.delete(`${namespace}/${key}`);
  }

  list(namespace: string): StoreRecord[] {
    const prefix = `${namespace}/`;
    return [...this.records]
      .filter(([id]) => id.startsWith(prefix))
      .map(([id, value]) => ({ key: id.slice(prefix.length), value: value.slice(0) }));
  }

  /** Whether a record's key names `key` (the outbox keeps a send under its idempotency key). */
  holds(key: string): boolean {
    return [...this.records.keys()].some((id) => id.includes(key));
  }
}

/** The error `body` rejects with, failing when it resolves. */
async function rejection(body: () => Promise<unknown>): Promise<unknown> {
  try {
    await body();
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection, the call succeeded");
}

const tag = (): string => `k${randomUUID().slice(0, 8)}`;

test("users of two regions talk in a DM, each message once and in order", async () => {
  const ana = await connect("ana");
  const sam = await connect("sam");
  assert.equal(ana.session().homeRegion, "eu-west");
  assert.equal(sam.session().homeRegion, "us-east");
  const anaHears = new Inbox("ana", ana);
  const samHears = new Inbox("sam", sam);

  const dm = await ana.createDm("sam");
  assert.equal(dm.kind, SpaceKind.Dm);
  assert.equal(dm.region, "eu-west");
  await ana.joinSpace(dm.space);
  await sam.joinSpace(dm.space);

  const t = tag();
  const bodies = [1, 2, 3].map((n) => `${t} ana ${n}`);
  const sends = [];
  for (const body of bodies) {
    sends.push(await ana.sendMessage(dm.space, body));
  }
  const receipts = await Promise.all(sends.map((s) => s.acked()));
  const first = receipts[0]!.seq;
  assert.deepEqual(
    receipts.map((r) => r.seq),
    [first, first + 1n, first + 2n],
    "consecutive seqs",
  );

  const received = await samHears.messages(3, (m) => m.space === dm.space && m.body.startsWith(t));
  assert.deepEqual(
    received.map((m) => m.body),
    bodies,
  );
  assert.deepEqual(
    received.map((m) => m.seq),
    receipts.map((r) => r.seq),
  );
  assert.deepEqual(
    received.map((m) => m.id),
    receipts.map((r) => r.messageId),
  );
  assert.ok(received.every((m) => m.sender === "ana"));
  await samHears.expectNone((m) => m.body.startsWith(t));

  const reply = await (await sam.sendMessage(dm.space, `${t} sam reply`)).acked();
  const heard = await anaHears.messages(1, (m) => m.sender === "sam" && m.body.startsWith(t));
  assert.equal(heard[0]!.body, `${t} sam reply`);
  assert.equal(heard[0]!.seq, reply.seq);
  assert.equal(reply.seq, first + 3n);
  anaHears.close();
  samHears.close();
  await closeAll();
});

test("a send the policy forbids and bad input fail with typed errors", async () => {
  const ana = await connect("ana");
  const refused = await rejection(() => ana.sendMessage(LAUNCH, "must not leave"));
  assert.ok(MeridianError.PolicyViolation.instanceOf(refused), `got ${String(refused)}`);
  assert.equal(refused.inner.region, "us-east");
  assert.equal(errorCode(refused), "policy_violation");
  assert.deepEqual(await ana.pendingSends(), []);

  const invalid = await rejection(() => ana.joinSpace(""));
  assert.ok(MeridianError.InvalidInput.instanceOf(invalid), `got ${String(invalid)}`);
  assert.equal(errorCode(invalid), "invalid_input");

  const stranger = await rejection(() =>
    connectClient({
      directoryUrl: fed.directoryUrl,
      token: "not-a-token",
      federationKeys: fed.federationKeys,
    }),
  );
  assert.equal(errorCode(stranger), "unauthorized");
  assert.equal(errorCode(new Error("not ours")), undefined);
  await closeAll();
});

test("clients reconnect after the devserver is killed and restarted", async () => {
  const ana = await connect("ana");
  const ben = await connect("ben");
  const anaHears = new Inbox("ana", ana);
  await ana.joinSpace(GENERAL);
  await ben.joinSpace(GENERAL);

  const t = tag();
  const before = await (await ben.sendMessage(GENERAL, `${t} before`)).acked();
  const first = await anaHears.messages(1, (m) => m.body === `${t} before`);
  assert.equal(first[0]!.seq, before.seq);

  await fed.restart();

  const receipt = await (await ben.sendMessage(GENERAL, `${t} after`)).acked();
  const heard = await anaHears.messages(1, (m) => m.body === `${t} after`, 30_000);
  assert.equal(heard[0]!.seq, receipt.seq);
  assert.equal(heard[0]!.seq, before.seq + 1n);
  assert.equal((await ana.connectionState()).tag, ConnectionState.Connected.new().tag);
  await anaHears.expectNone((m) => m.body.startsWith(t));
  anaHears.close();
  await closeAll();
});

test("a send made offline survives a restart of the client in the app's own store", async () => {
  const store = new MapStore();
  const ben = await connect("ben");
  const benHears = new Inbox("ben", ben);
  await ben.joinSpace(GENERAL);

  const first = await connect("ana", store);
  await first.joinSpace(GENERAL);
  first.networkChanged(false);
  const t = tag();
  const pending = await first.sendMessage(GENERAL, `${t} offline`);
  const key = pending.key();
  const queued = await first.pendingSends();
  assert.deepEqual(
    queued.map((e) => [e.key, e.body]),
    [[key, `${t} offline`]],
  );
  assert.ok(store.holds(key), "the send is in the app's store");
  await benHears.expectNone((m) => m.body.startsWith(t));
  await close(first);
  assert.ok(store.holds(key), "the send is still in the app's store");
  const closed = await rejection(() => first.sendMessage(GENERAL, "after disconnect"));
  assert.equal(errorCode(closed), "closed");

  const second = await connect("ana", store);
  const anaHears = new Inbox("ana", second);
  await second.joinSpace(GENERAL);
  const delivered = await benHears.messages(1, (m) => m.body.startsWith(t), 30_000);
  assert.equal(delivered[0]!.body, `${t} offline`);
  assert.equal(delivered[0]!.sender, "ana");
  const seen = await anaHears.messages(1, (m) => m.body.startsWith(t), 30_000);
  assert.equal(seen[0]!.id, delivered[0]!.id);
  const deadline = Date.now() + 10_000;
  while ((await second.pendingSends()).length > 0) {
    assert.ok(Date.now() < deadline, "the restored send is still pending after 10 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  await anaHears.expectNone((m) => m.body.startsWith(t));
  // The store is written in the background; disconnect waits until it is up to date.
  await close(second);
  assert.ok(!store.holds(key), "a delivered send leaves the app's store");
  await benHears.expectNone((m) => m.body.startsWith(t));
  anaHears.close();
  benHears.close();
  await closeAll();
});

test("an event stream ends when the client disconnects", async () => {
  const ana = await connect("ana");
  const stream = events(ana);
  await close(ana);
  const heard: Event[] = [];
  for await (const event of stream) {
    heard.push(event);
  }
  const last = heard[heard.length - 1];
  assert.ok(last !== undefined && Event.ConnectionChanged.instanceOf(last), "ends with ConnectionChanged");
  assert.ok(ConnectionState.Closed.instanceOf(last.inner.state), "to Closed");
});

test("logs reach the app's handler with trace ids and never a token or a body", async () => {
  const records: LogEntry[] = [];
  const body = "a body that must never be logged 27be";
  const client = await connectClient({
    directoryUrl: fed.directoryUrl,
    token: "sam-token",
    federationKeys: fed.federationKeys,
    logLevel: "debug",
    logHandler: { log: (record: LogEntry) => void records.push(record) },
  });
  open.add(client);
  try {
    await client.joinSpace(GENERAL);
    const receipt = await (await client.sendMessage(GENERAL, body)).acked();
    const field = (record: LogEntry, name: string): string | undefined =>
      record.fields.find((f) => f.name === name)?.value;
    const stored = records.filter((r) => r.message === "send stored");
    assert.equal(stored.length, 1, JSON.stringify(records));
    const trace = field(stored[0]!, "trace") ?? "";
    assert.match(trace, /^[0-9a-f]{32}$/);
    assert.equal(field(stored[0]!, "seq"), String(receipt.seq));
    assert.ok(records.some((r) => r.message === "send submitted" && field(r, "trace") === trace));
    for (const line of records.map((r) => JSON.stringify(r))) {
      assert.ok(!line.includes(body), `a body in the logs: ${line}`);
      assert.ok(!line.includes("sam-token"), `a token in the logs: ${line}`);
    }
  } finally {
    setLogHandler("off", undefined);
    await close(client);
  }
});
