// The npm package in Node against a real devserver on loopback: the same scenarios a web
// app lives through, through the public TypeScript API only.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  Client,
  ClosedError,
  DirectoryUnavailableError,
  InvalidInputError,
  MeridianError,
  PolicyViolationError,
  UnauthorizedError,
  IntegrityError,
} from "@meridian/sdk";
import { Devserver } from "./devserver.js";
import { MapStore, connect, take, until } from "./support.js";

let fed: Devserver;

before(async () => {
  fed = await Devserver.start();
});

after(async () => {
  await fed.stop();
});

test("connects and says who the user is (in Node the default store is memory)", async () => {
  const client = await Client.connect({
    directoryUrl: fed.directoryUrl,
    token: "ana-token",
    federationKeys: fed.federationKeys,
  });
  assert.equal(client.session.user, "ana");
  assert.equal(client.session.homeRegion, "eu-west");
  assert.equal(client.session.policy, "eu-strict");
  await client.disconnect();
});

test("users homed in different regions exchange messages in order, each once", async () => {
  const ana = await connect(fed, "ana");
  const sam = await connect(fed, "sam");
  assert.notEqual(ana.client.session.homeRegion, sam.client.session.homeRegion);
  const dm = await ana.client.createDm("sam");
  // The one region both policies permit: eu-strict allows only eu-west.
  assert.equal(dm.region, "eu-west");
  assert.equal(dm.kind, "dm");
  await ana.client.joinSpace(dm.space);
  await sam.client.joinSpace(dm.space);

  const heardByListener: string[] = [];
  const off = ana.client.on("message", (event) => heardByListener.push(event.message.body));

  const receipts = [];
  for (const text of ["one", "two", "three"]) {
    const pending = await ana.client.sendMessage(dm.space, text);
    assert.equal(pending.space, dm.space);
    receipts.push(await pending.acked());
  }
  assert.deepEqual(
    receipts.map((r) => r.seq),
    [receipts[0]!.seq, receipts[0]!.seq + 1, receipts[0]!.seq + 2],
  );
  const received = await take(sam.events, "message", 3);
  assert.deepEqual(
    received.map((e) => [e.message.body, e.message.sender, e.message.seq]),
    receipts.map((r, i) => [["one", "two", "three"][i], "ana", r.seq]),
  );

  await (await sam.client.sendMessage(dm.space, "hi ana")).acked();
  const reply = await take(ana.events, "message", 4);
  assert.equal(reply.at(-1)!.message.body, "hi ana");
  assert.deepEqual(heardByListener, ["one", "two", "three", "hi ana"]);
  off();

  const history = await sam.client.history(dm.space, { limit: 10 });
  assert.deepEqual(
    history.slice(-4).map((m) => m.body),
    ["one", "two", "three", "hi ana"],
  );
  await ana.client.disconnect();
  await sam.client.disconnect();
});

test("a policy refusal is a typed error, reported, with nothing queued", async () => {
  const { client, events } = await connect(fed, "ana");
  await assert.rejects(client.sendMessage("globex:launch", "hello"), (e: unknown) => {
    assert.ok(e instanceof PolicyViolationError);
    assert.ok(e instanceof MeridianError);
    assert.equal(e.code, "policy_violation");
    assert.equal(e.region, "us-east");
    assert.equal(e.transient, false);
    return true;
  });
  const [blocked] = await take(events, "policyBlocked", 1);
  assert.equal(blocked!.region, "us-east");
  assert.equal(blocked!.space, "globex:launch");
  assert.deepEqual(await client.pendingSends(), []);
  await client.disconnect();
});

test("bad input from the app is a typed error and leaves the client working", async () => {
  const { client } = await connect(fed, "sam");
  await assert.rejects(client.joinSpace(""), InvalidInputError);
  await assert.rejects(client.sendMessage("globex:launch", "   "), InvalidInputError);
  await assert.rejects(client.history("globex:launch", { limit: 0 }), InvalidInputError);
  await assert.rejects(client.createDm("sam"), InvalidInputError);
  await assert.rejects(client.setPresence("asleep" as "away"), InvalidInputError);
  const joined = await client.joinSpace("globex:launch");
  assert.equal(joined.space, "globex:launch");
  await client.disconnect();
});

test("a wrong token or an untrusted federation key refuses to connect", async () => {
  await assert.rejects(
    Client.connect({
      directoryUrl: fed.directoryUrl,
      token: "not-a-token",
      federationKeys: fed.federationKeys,
      store: "memory",
    }),
    UnauthorizedError,
  );
  await assert.rejects(
    Client.connect({
      directoryUrl: fed.directoryUrl,
      token: "ana-token",
      federationKeys: [{ id: "federation-0", publicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }],
      store: "memory",
    }),
    IntegrityError,
  );
  await assert.rejects(
    Client.connect({
      directoryUrl: fed.directoryUrl,
      token: "ana-token",
      federationKeys: [{ id: "federation-0", publicKey: "short" }],
    }),
    InvalidInputError,
  );
  await assert.rejects(
    Client.connect({
      directoryUrl: "http://127.0.0.1:1",
      token: "ana-token",
      federationKeys: fed.federationKeys,
    }),
    DirectoryUnavailableError,
  );
});

test("a data-sovereignty space arrives sealed and is opened on the device", async () => {
  const chloe = await connect(fed, "chloe");
  const leo = await connect(fed, "leo");
  await chloe.client.joinSpace("maple:lounge");
  await leo.client.joinSpace("maple:lounge");
  await (await leo.client.sendMessage("maple:lounge", "bonjour")).acked();
  const [event] = await take(chloe.events, "message", 1);
  assert.equal(event!.message.body, "bonjour");
  await chloe.client.disconnect();
  await leo.client.disconnect();
});

test("sends made offline go out when the network is back, in order, once", async () => {
  const tom = await connect(fed, "tom");
  const sam = await connect(fed, "sam");
  await sam.client.joinSpace("globex:random");
  await tom.client.joinSpace("globex:random");
  tom.client.networkChanged(false);
  await until(tom.events, (e) => e.type === "connection" && e.state.state === "offline");
  const pending = [];
  for (let i = 0; i < 5; i += 1) {
    pending.push(await tom.client.sendMessage("globex:random", `offline ${i}`));
  }
  assert.equal((await tom.client.pendingSends()).length, 5);
  tom.client.networkChanged(true);
  const receipts = await Promise.all(pending.map((p) => p.acked()));
  assert.deepEqual(
    receipts.map((r) => r.seq - receipts[0]!.seq),
    [0, 1, 2, 3, 4],
  );
  const got = await take(sam.events, "message", 5);
  assert.deepEqual(
    got.map((e) => e.message.body),
    [0, 1, 2, 3, 4].map((i) => `offline ${i}`),
  );
  assert.deepEqual(await tom.client.pendingSends(), []);
  await tom.client.disconnect();
  await sam.client.disconnect();
});

test("a send left in the app's own store goes out after a restart of the client", async () => {
  const store = new MapStore();
  const first = await connect(fed, "ben", { store });
  first.client.networkChanged(false);
  const pending = await first.client.sendMessage("acme:general", "survives a restart");
  await first.client.disconnect();
  assert.ok([...store.records.keys()].some((k) => k.startsWith("outbox")), "the send was persisted");
  await assert.rejects(pending.acked(), MeridianError);

  const ana = await connect(fed, "ana");
  await ana.client.joinSpace("acme:general");
  // The restored send goes out at once; the app listens only a while later, and still
  // hears how it went.
  const second = await Client.connect({
    directoryUrl: fed.directoryUrl,
    token: "ben-token",
    federationKeys: fed.federationKeys,
    store,
  });
  await new Promise((r) => setTimeout(r, 500));
  const sentKeys: string[] = [];
  second.on("messageSent", (e) => sentKeys.push(e.key));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(sentKeys, [pending.key]);
  const [heard] = await take(ana.events, "message", 1);
  assert.equal(heard!.message.body, "survives a restart");
  await second.disconnect();
  await ana.client.disconnect();
});

test("clients reconnect and resubscribe after the federation restarts", async () => {
  const ana = await connect(fed, "ana");
  const ben = await connect(fed, "ben");
  await ana.client.joinSpace("acme:general");
  await ben.client.joinSpace("acme:general");
  await (await ben.client.sendMessage("acme:general", "before")).acked();
  await take(ana.events, "message", 1);

  await fed.restart(300);
  const pending = await ben.client.sendMessage("acme:general", "after");
  await pending.acked();
  const [heard] = await take(ana.events, "message", 1, 30_000);
  assert.equal(heard!.message.body, "after");
  assert.equal((await ana.client.connectionState()).state, "connected");
  await ana.client.disconnect();
  await ben.client.disconnect();
});

test("event streams end when the client disconnects", async () => {
  const { client, events } = await connect(fed, "tom");
  await client.joinSpace("globex:launch");
  const drained = (async () => {
    const seen = [];
    for await (const event of events) {
      seen.push(event.type);
    }
    return seen;
  })();
  await client.disconnect();
  // The loop ends by itself; the last word is the connection closing.
  assert.equal((await drained).at(-1), "connection");
  await assert.rejects(client.joinSpace("globex:launch"), ClosedError);
  assert.deepEqual(await client.connectionState(), { state: "closed" });
});

test("logs asked of the default build: one console warning naming @meridian/sdk/debug", async () => {
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    for (let i = 0; i < 2; i++) {
      const client = await Client.connect({
        directoryUrl: fed.directoryUrl,
        token: "sam-token",
        federationKeys: fed.federationKeys,
        store: "memory",
        logLevel: "debug",
        logHandler: () => assert.fail("the default build has no logs to hand over"),
      });
      await (await client.sendMessage("acme:general", "unlogged")).acked();
      await client.disconnect();
    }
  } finally {
    console.warn = original;
  }
  assert.equal(warnings.length, 1, warnings.join("\n"));
  assert.match(warnings[0]!, /@meridian\/sdk\/debug/);
});
