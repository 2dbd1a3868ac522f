// One tab of the two-tab test: connects as `user` with the default store (IndexedDB, shared
// by the tabs of the origin), joins `space`, and records every message event it hears, so
// that the test can tell a message shown twice (or never) in a tab.

import { Client } from "@meridian/sdk";

const params = new URLSearchParams(location.search);
const space = params.get("space") ?? "acme:general";

async function start() {
  const client = await Client.connect({
    directoryUrl: params.get("directory") ?? "",
    token: `${params.get("user") ?? "ana"}-token`,
    federationKeys: JSON.parse(params.get("keys") ?? "[]"),
    storeName: `meridian-tabs-${params.get("user") ?? "ana"}`,
  });
  /** @type {{seq: number, body: string}[]} */
  const received = [];
  client.on("message", (event) => {
    if (event.message.space === space) {
      received.push({ seq: event.message.seq, body: event.message.body });
    }
  });
  await client.joinSpace(space);
  /** @type {Promise<unknown>[]} */
  const acks = [];
  return {
    received,
    leading: () => client.isLeadingTab,
    /** Resolves once the send is in the (shared) outbox; its ack is kept for `settled`. */
    send: async (/** @type {string} */ text) => {
      const pending = await client.sendMessage(space, text);
      acks.push(pending.acked());
    },
    settled: () => Promise.all(acks).then((receipts) => receipts.length),
    history: () => client.history(space, { limit: 200 }),
    disconnect: () => client.disconnect(),
  };
}

window.meridianTab = start();
