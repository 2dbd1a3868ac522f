// The framework-agnostic stores (what the React hooks read) and `client.state`, against a
// real devserver: the snapshots a screen draws must follow what the core reports.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  PolicyViolationError,
  PresenceStore,
  SpaceStore,
  TypingStore,
  connectionStore,
  type ExternalStore,
} from "@meridian/sdk";
import { Devserver } from "./devserver.js";
import { connect } from "./support.js";

let fed: Devserver;

before(async () => {
  fed = await Devserver.start();
});

after(async () => {
  await fed.stop();
});

/** Resolves with the store's snapshot once `predicate` holds for it. */
function when<T>(store: ExternalStore<T>, predicate: (value: T) => boolean, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const value = store.getSnapshot();
      if (predicate(value)) {
        stop();
        clearTimeout(timer);
        resolve(value);
        return true;
      }
      return false;
    };
    const stop = store.subscribe(check);
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`waited 15 s for ${what}; the snapshot is ${JSON.stringify(store.getSnapshot())}`));
    }, 15_000);
    check();
  });
}

test("a space store shows history, then each message once in order, and pending sends until stored", async () => {
  const ana = await connect(fed, "ana");
  const ben = await connect(fed, "ben");
  await (await ben.client.sendMessage("acme:general", "from before")).acked();

  const store = new SpaceStore(ana.client, "acme:general", { keep: 5 });
  assert.equal(store.getSnapshot().status, "joining");
  const joined = await when(store, (s) => s.status === "joined" && s.messages.length > 0, "history");
  assert.equal(joined.messages.at(-1)?.body, "from before");
  const before = store.getSnapshot();
  assert.equal(store.getSnapshot(), before, "the snapshot is the same object until it changes");

  const changes: string[][] = [];
  store.subscribe(() => changes.push(store.getSnapshot().pending.map((p) => p.state)));
  const sent = await store.send("mine");
  assert.ok(changes.some((c) => c.includes("saving")), `pending went through saving: ${JSON.stringify(changes)}`);
  await sent.acked();
  for (let i = 0; i < 7; i += 1) {
    await (await ben.client.sendMessage("acme:general", `ben ${i}`)).acked();
  }
  const settled = await when(
    store,
    (s) => s.messages.at(-1)?.body === "ben 6" && s.pending.length === 0,
    "ben's messages and the send stored",
  );
  // Bounded to `keep`, in seq order, no repeats.
  assert.equal(settled.messages.length, 5);
  const seqs = settled.messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.equal(new Set(seqs).size, seqs.length);
  assert.deepEqual(
    settled.messages.map((m) => m.body),
    ["ben 2", "ben 3", "ben 4", "ben 5", "ben 6"],
  );
  store.close();
  await ana.client.disconnect();
  await ben.client.disconnect();
});

test("a send the policy refuses leaves no pending item and rejects with the typed error", async () => {
  const ana = await connect(fed, "ana");
  const store = new SpaceStore(ana.client, "globex:launch");
  await when(store, (s) => s.status === "failed", "the join refused");
  assert.ok(store.getSnapshot().error instanceof PolicyViolationError);
  await assert.rejects(store.send("hi"), PolicyViolationError);
  assert.deepEqual(store.getSnapshot().pending, []);
  store.close();
  await ana.client.disconnect();
});

test("presence and typing stores follow the space; typing expires without news", async () => {
  const ana = await connect(fed, "ana");
  const ben = await connect(fed, "ben");
  await ana.client.joinSpace("acme:general");
  await ben.client.joinSpace("acme:general");
  const presence = new PresenceStore(ana.client, "acme:general");
  const typing = new TypingStore(ana.client, "acme:general");
  await ben.client.setPresence("away");
  await when(presence, (p) => p["ben"] === "away", "ben away");
  await ben.client.typing("acme:general", true);
  await when(typing, (t) => t.includes("ben"), "ben typing");
  await ben.client.typing("acme:general", false);
  await when(typing, (t) => t.length === 0, "ben stopped");
  presence.close();
  typing.close();
  await ana.client.disconnect();
  await ben.client.disconnect();
});

test("client.state is synchronous and follows the connection, to closed", async () => {
  const tom = await connect(fed, "tom");
  assert.ok(
    ["idle", "connecting", "connected"].includes(tom.client.state.state),
    `a fresh client is on its way, not ${tom.client.state.state}`,
  );
  const states = connectionStore(tom.client);
  await tom.client.joinSpace("globex:random");
  await when(states, (s) => s.state === "connected", "connected");
  tom.client.networkChanged(false);
  await when(states, (s) => s.state === "offline", "offline");
  tom.client.networkChanged(true);
  await when(states, (s) => s.state === "connected", "connected again");
  await tom.client.disconnect();
  assert.deepEqual(tom.client.state, { state: "closed" });
});
