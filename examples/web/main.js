// The Meridian web demo: one DM between two demo users, through the public API of
// @meridian/sdk only. Parameters come from the query string (see README.md):
//   directory  the directory's URL (default http://127.0.0.1:7700)
//   keys       the federation keys, JSON `[{"id", "publicKey"}]` (`public_key`, as the
//              devserver's READY line spells it, is accepted too)
//   user       the demo user to sign in as (token `<user>-token`)
//   peer       the other user of the DM

import { Client } from "@meridian/sdk";

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.querySelector(`[data-testid="${id}"]`));

const ui = {
  app: $("app"),
  title: $("title"),
  whoami: $("whoami"),
  status: $("status"),
  space: $("space"),
  spaceRegion: $("space-region"),
  regions: $("regions"),
  messages: $("messages"),
  pending: $("pending"),
  pendingCount: $("pending-count"),
  error: $("error"),
  composer: /** @type {HTMLFormElement} */ ($("composer")),
  input: /** @type {HTMLInputElement} */ ($("input")),
  send: /** @type {HTMLButtonElement} */ ($("send")),
  log: $("event-log"),
};

const ready = start();
// The one global: lets a test (or the console) wait until the page is usable.
window.meridianDemo = { ready };
ready.catch((error) => {
  ui.status.dataset["state"] = "error";
  ui.status.textContent = "Failed";
  showError(error);
});

async function start() {
  const params = new URLSearchParams(location.search);
  const directoryUrl = params.get("directory") ?? "http://127.0.0.1:7700";
  const user = params.get("user") ?? "ana";
  const peer = params.get("peer") ?? (user === "sam" ? "ana" : "sam");
  const federationKeys = parseKeys(params.get("keys"));
  document.title = `Meridian · ${user}`;
  ui.title.textContent = `DM with ${peer}`;
  ui.whoami.textContent = `Signing in as ${user}…`;

  const client = await Client.connect({
    directoryUrl,
    token: `${user}-token`,
    federationKeys,
    storeName: `meridian-${user}`,
  });
  const me = client.session;
  ui.whoami.textContent =
    `${me.displayName} (${me.user}) · home region ${me.homeRegion} · policy ${me.policy}`;

  const view = new MessageView(me.user);
  const pending = new PendingView(client);
  let space = "";

  client.on("*", (event) => logEvent(event));
  client.on("connection", (event) => setStatus(event.state));
  client.on("regionConnection", (event) => setRegion(event.region, event.state));
  client.on("message", (event) => {
    if (event.message.space === space) {
      view.live(event.message);
    }
    pending.refresh();
  });
  client.on("messageSent", () => pending.refresh());
  client.on("sendFailed", (event) => {
    showError(new Error(`a send failed for good: ${event.error.message}`));
    pending.refresh();
  });
  client.on("continuityLost", (event) => {
    if (event.space === space) {
      // Some messages can't be delivered any more: rebuild from the newest page.
      client.resync(space).then((page) => view.past(page), showError);
    }
  });
  setStatus(await client.connectionState());

  const dm = await client.createDm(peer);
  space = dm.space;
  ui.space.textContent = dm.space;
  ui.spaceRegion.textContent = `${dm.region} (${dm.residency.toUpperCase()})`;
  const joined = await client.joinSpace(dm.space);
  view.past(await client.history(dm.space, { limit: 50 }), joined.headSeq);
  await pending.refresh();

  // Sends are made one after another, in the order typed.
  let sending = Promise.resolve();
  ui.composer.addEventListener("submit", (submit) => {
    submit.preventDefault();
    const text = ui.input.value.trim();
    if (text === "") {
      return;
    }
    ui.input.value = "";
    sending = sending.then(async () => {
      try {
        const send = await client.sendMessage(space, text);
        showError(null);
        send.acked().then(
          () => pending.refresh(),
          () => pending.refresh(),
        );
      } catch (error) {
        showError(error);
      }
      await pending.refresh();
    });
  });
  ui.input.disabled = false;
  ui.send.disabled = false;
  ui.input.focus();
  ui.app.dataset["ready"] = "true";
  return { user: me.user, space: dm.space };
}

/** @param {string | null} text */
function parseKeys(text) {
  if (!text) {
    throw new Error(
      'no federation keys: add ?keys=[{"id":…,"publicKey":…}] to the URL ' +
        "(the devserver prints them with --ready-line)",
    );
  }
  const keys = JSON.parse(text);
  if (!Array.isArray(keys)) {
    throw new Error("keys: expected a JSON array");
  }
  return keys.map((k) => ({ id: String(k.id), publicKey: String(k.publicKey ?? k.public_key) }));
}

/** The messages of the DM: what history said, then every `message` event as it came. */
class MessageView {
  /** @param {string} me */
  constructor(me) {
    this.me = me;
    /** seq -> element, for the messages the SDK delivered as events. */
    this.delivered = new Map();
    /** seq -> element, for the messages only read from history. */
    this.fetched = new Map();
  }

  /**
   * Every delivered message is shown as it arrives, even one with a seq seen before: the
   * SDK promises each exactly once, and this page does not hide it if it broke that.
   * @param {import("@meridian/sdk").Message} message
   */
  live(message) {
    this.fetched.get(message.seq)?.remove();
    this.fetched.delete(message.seq);
    const item = this.render(message, "live");
    this.delivered.set(message.seq, item);
    ui.messages.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  /**
   * Messages read from history (at start, or after continuity was lost), shown before the
   * delivered ones, where not delivered already.
   * @param {import("@meridian/sdk").Message[]} page
   * @param {number} [upTo] the newest seq to take: later ones will arrive as events
   */
  past(page, upTo = Infinity) {
    const firstLive = Math.min(upTo + 1, ...this.delivered.keys());
    const older = page.filter(
      (m) => m.seq < firstLive && !this.delivered.has(m.seq) && !this.fetched.has(m.seq),
    );
    for (const message of older) {
      const item = this.render(message, "history");
      this.fetched.set(message.seq, item);
      const next = [...ui.messages.children].find(
        (el) =>
          el instanceof HTMLElement &&
          (el.dataset["source"] === "live" || Number(el.dataset["seq"]) > message.seq),
      );
      ui.messages.insertBefore(item, next ?? null);
    }
  }

  /**
   * @param {import("@meridian/sdk").Message} message
   * @param {"live" | "history"} source
   */
  render(message, source) {
    const item = document.createElement("li");
    const mine = message.sender === this.me;
    item.className = mine ? "message mine" : "message";
    item.dataset["testid"] = "message";
    item.dataset["seq"] = String(message.seq);
    item.dataset["sender"] = message.sender;
    item.dataset["source"] = source;
    const bubble = document.createElement("span");
    bubble.className = "bubble";
    bubble.dataset["testid"] = "message-body";
    bubble.textContent = message.body;
    const info = document.createElement("div");
    info.className = "info";
    const time = new Date(message.sentAtMs).toLocaleTimeString();
    info.textContent = `${mine ? "me" : message.sender} · #${message.seq} · ${time}`;
    item.append(bubble, info);
    return item;
  }
}

/** The outbox: sends not yet stored by their region, refreshed when something may change it. */
class PendingView {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    this.running = null;
    this.again = false;
  }

  /** Reads `pendingSends()` again (once more after the read in flight, if any). */
  refresh() {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          this.render(await this.client.pendingSends());
        } catch (error) {
          showError(error);
        }
      } while (this.again);
      this.running = null;
    })();
    return this.running;
  }

  /** @param {import("@meridian/sdk").OutboxEntry[]} entries */
  render(entries) {
    ui.pendingCount.textContent = String(entries.length);
    ui.pending.replaceChildren(
      ...entries.map((entry) => {
        const item = document.createElement("li");
        item.dataset["testid"] = "pending-item";
        item.dataset["status"] = entry.status;
        item.dataset["key"] = entry.key;
        const body = document.createElement("span");
        body.dataset["testid"] = "pending-body";
        body.textContent = entry.body;
        const state = document.createElement("span");
        state.className = "state";
        state.textContent =
          entry.status === "failed" ? `failed: ${entry.error?.message}` : "waiting to send";
        item.append(body, state);
        return item;
      }),
    );
  }
}

/** @param {import("@meridian/sdk").ConnectionState} state */
function setStatus(state) {
  ui.status.dataset["state"] = state.state;
  ui.status.textContent = describe(state);
}

/** @type {Map<string, string>} */
const regionStates = new Map();

/**
 * @param {string} region
 * @param {import("@meridian/sdk").ConnectionState} state
 */
function setRegion(region, state) {
  regionStates.set(region, state.state);
  const sockets = [...regionStates]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, s]) => `${id} ${s}`)
    .join(", ");
  ui.regions.textContent = `sockets: ${sockets}`;
}

/** @param {import("@meridian/sdk").ConnectionState} state */
function describe(state) {
  switch (state.state) {
    case "idle":
      return "Idle";
    case "connecting":
      return "Connecting…";
    case "connected":
      return "Connected";
    case "offline":
      return "Offline: sends wait";
    case "reconnecting":
      return `Reconnecting (try ${state.attempt}, in ${Math.ceil(state.retryInMs / 1000)} s)`;
    case "closed":
      return "Closed";
  }
  return String(/** @type {{ state: unknown }} */ (state).state);
}

/** @param {unknown} error */
function showError(error) {
  ui.error.textContent = error ? String(/** @type {Error} */ (error).message ?? error) : "";
}

/** @param {import("@meridian/sdk").MeridianEvent} event */
function logEvent(event) {
  const line = `${new Date().toISOString().slice(11, 23)} ${JSON.stringify(event)}`;
  console.debug(`[meridian] ${line}`);
  const item = document.createElement("li");
  item.textContent = line;
  ui.log.append(item);
}
