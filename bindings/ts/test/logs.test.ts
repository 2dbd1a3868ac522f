// `@meridian/sdk/debug` in Node against a real devserver: the core's logs reach the app's
// handler at the level it asked, carry each send's trace id, and never hold a token or a
// message body.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Client, InvalidInputError, type LogRecord } from "@meridian/sdk/debug";
import { Devserver } from "./devserver.js";

let fed: Devserver;

before(async () => {
  fed = await Devserver.start();
});

after(async () => {
  await fed.stop();
});

test("logs carry trace ids, at the level asked, and never a token or a body", async () => {
  const records: LogRecord[] = [];
  const body = "a body that must never be logged 41c9";
  const client = await Client.connect({
    directoryUrl: fed.directoryUrl,
    token: "sam-token",
    federationKeys: fed.federationKeys,
    store: "memory",
    logLevel: "debug",
    logHandler: (record) => records.push(record),
  });
  await client.joinSpace("acme:general");
  const receipt = await (await client.sendMessage("acme:general", body)).acked();
  await client.disconnect();

  const lines = records.map((r) => JSON.stringify(r));
  assert.ok(
    records.some((r) => r.level === "info" && r.message === "connected to the federation"),
    lines.join("\n"),
  );
  const submitted = records.filter((r) => r.message === "send submitted");
  const stored = records.filter((r) => r.message === "send stored");
  assert.equal(submitted.length, 1, lines.join("\n"));
  assert.equal(stored.length, 1, lines.join("\n"));
  const trace = submitted[0]!.fields["trace"] ?? "";
  assert.match(trace, /^[0-9a-f]{32}$/);
  assert.equal(stored[0]!.fields["trace"], trace, "one trace id from submission to receipt");
  assert.equal(stored[0]!.fields["seq"], String(receipt.seq));
  assert.ok(records.every((r) => ["error", "warn", "info", "debug"].includes(r.level)), "nothing under debug");
  for (const line of lines) {
    assert.ok(!line.includes(body), `a body in the logs: ${line}`);
    assert.ok(!line.includes("sam-token"), `a token in the logs: ${line}`);
  }
});

test("a higher level keeps the chatter out, and off stops it", async () => {
  const records: LogRecord[] = [];
  const connect = (logLevel: "warn" | "off"): Promise<Client> =>
    Client.connect({
      directoryUrl: fed.directoryUrl,
      token: "sam-token",
      federationKeys: fed.federationKeys,
      store: "memory",
      logLevel,
      logHandler: (record) => records.push(record),
    });
  const warned = await connect("warn");
  await (await warned.sendMessage("acme:general", "quiet")).acked();
  await warned.disconnect();
  assert.deepEqual(
    records.filter((r) => r.level !== "warn" && r.level !== "error"),
    [],
    "only warnings and errors",
  );
  const off = await connect("off");
  const before = records.length;
  await (await off.sendMessage("acme:general", "silent")).acked();
  await off.disconnect();
  assert.equal(records.length, before, "nothing once off");
});

test("an unknown level is refused with a typed error", async () => {
  await assert.rejects(
    Client.connect({
      directoryUrl: fed.directoryUrl,
      token: "sam-token",
      federationKeys: fed.federationKeys,
      store: "memory",
      logLevel: "loud" as "debug",
    }),
    InvalidInputError,
  );
});
