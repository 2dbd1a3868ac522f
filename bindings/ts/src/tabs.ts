// Several tabs, one outbox. The tabs of an origin that use the same IndexedDB database
// elect one leader (the Web Locks API; a lease in localStorage where it is missing), and
// only the leader runs a wasm client over that database: one outbox, one set of cursors,
// one socket per region. The others hand it their calls over a BroadcastChannel and hear
// every event it publishes.
//
// When the leader goes (closed, reloaded, disconnected), the next tab to get the lock opens
// the database (the outbox and cursors the last leader left), announces itself, and every
// tab hands it what was unanswered and joins its spaces again. Nothing is lost or doubled:
// - a send carries the idempotency key its tab chose, so making it again is safe: either
//   the new leader restored it from the store (found in its outbox), or the region stored
//   it already (and answers with the first receipt), or it never got anywhere (sent now);
// - cursors are written at most once a second after delivery, so the new leader replays
//   from at or before what the last one published, and each tab drops a message whose
//   seq it has already had.

import type { Core, CoreSend } from "./client.js";
import type { ErrorInfo, JoinedSpace, MeridianEvent, Message, OutboxEntry } from "./types.js";

/** The methods a follower hands to the leader. */
type Method =
  | "joinSpace"
  | "leaveSpace"
  | "sendMessage"
  | "pendingSends"
  | "retrySend"
  | "cancelSend"
  | "history"
  | "resync"
  | "setPresence"
  | "typing"
  | "createDm"
  | "connectionState"
  | "networkChanged";

/** What the tabs say to each other. `to` names the one tab a message is for. */
type Wire =
  | { readonly t: "hello"; readonly from: string }
  | { readonly t: "leader"; readonly from: string; readonly session: string }
  | {
      readonly t: "call";
      readonly from: string;
      readonly to: string;
      readonly id: number;
      readonly method: Method;
      readonly args: readonly unknown[];
    }
  | {
      readonly t: "reply";
      readonly to: string;
      readonly id: number;
      readonly ok: boolean;
      readonly value: unknown;
    }
  | { readonly t: "event"; readonly from: string; readonly event: MeridianEvent }
  /** A follower leaves: the spaces only it had joined are left. */
  | { readonly t: "bye"; readonly from: string }
  /** The leader leaves: the next tab to get the lock leads. */
  | { readonly t: "resign"; readonly from: string };

interface Call {
  readonly method: Method;
  readonly args: readonly unknown[];
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

interface SendWaiter {
  readonly resolve: (receipt: string) => void;
  readonly reject: (error: unknown) => void;
}

/** The most messages a tab reads back at a new leader; a longer gap is `continuityLost`. */
const FILL_LIMIT = 100;

/** How many events wait for the Client to subscribe (it does as it is made). */
const EARLY_LIMIT = 1024;

/** How often a tab that has not heard a leader asks again (ms). */
const HELLO_EVERY_MS = 250;

/** The lock (or lease) and the channel of one database: `meridian:<storeName>`. */
export function tabsName(storeName: string): string {
  return `meridian:${storeName}`;
}

/** Whether this platform can coordinate tabs (a browser with BroadcastChannel). */
export function tabsSupported(): boolean {
  return typeof BroadcastChannel !== "undefined" && typeof window !== "undefined";
}

function closedError(): ErrorInfo {
  return { code: "closed", message: "the client is disconnected", region: null };
}

function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A `Core` shared by the tabs of one database: this tab's own wasm client while it leads,
 * the leader's (over the channel) while it follows. The Client above it can't tell.
 */
export class TabCore implements Core {
  readonly #id = randomKey();
  readonly #channel: BroadcastChannel;
  readonly #connect: () => Promise<Core>;
  readonly #leadership: Leadership;
  /** The wasm client, while this tab leads. */
  #inner: Core | undefined;
  #leader: string | undefined;
  #session: string | undefined;
  #listener: ((event: MeridianEvent) => void) | undefined;
  /** Events heard before the Client subscribed. */
  #early: MeridianEvent[] = [];
  #nextCall = 1;
  /** Calls not answered yet: handed to the next leader if this one goes. */
  readonly #calls = new Map<number, Call>();
  /** Sends of this tab waiting for their outcome, by key. */
  readonly #sends = new Map<string, SendWaiter>();
  /** The spaces this tab joined: joined again at each new leader. */
  readonly #mine = new Set<string>();
  /** The newest seq this tab was given in each space. */
  readonly #seen = new Map<string, number>();
  /** Spaces being joined again at a new leader, with the live messages held back meanwhile. */
  readonly #filling = new Map<string, MeridianEvent[]>();
  /** While leading: which tabs joined each space. */
  readonly #joins = new Map<string, Set<string>>();
  #ready: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #hello: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  /** A leader disconnecting: it answers no more calls. */
  #stopping = false;
  readonly #onPageHide = (): void => this.#leave();

  private constructor(name: string, connect: () => Promise<Core>) {
    this.#connect = connect;
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = (message: MessageEvent<Wire>) => this.#heard(message.data);
    this.#leadership = Leadership.request(name, () => this.#lead());
    addEventListener("pagehide", this.#onPageHide);
  }

  /**
   * Joins (or starts) the tabs of database `name`: resolves once this tab leads (its wasm
   * client connected) or has heard the tab that does.
   */
  static async start(name: string, connect: () => Promise<Core>): Promise<TabCore> {
    let core: TabCore | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      core = new TabCore(name, connect);
      core.#ready = { resolve, reject };
    });
    const tab = core!;
    tab.#say({ t: "hello", from: tab.#id });
    tab.#hello = setInterval(() => tab.#say({ t: "hello", from: tab.#id }), HELLO_EVERY_MS);
    try {
      await ready;
    } catch (thrown) {
      tab.#shut();
      throw thrown;
    }
    return tab;
  }

  /** Whether this tab runs the shared client. */
  get leading(): boolean {
    return this.#inner !== undefined;
  }

  session(): string {
    return this.#inner?.session() ?? this.#session ?? "{}";
  }

  onEvent(listener: (event: MeridianEvent) => void): void {
    this.#listener = listener;
    for (const event of this.#early.splice(0)) {
      listener(event);
    }
  }

  async joinSpace(space: string): Promise<unknown> {
    const joined = await this.#invoke("joinSpace", [space]);
    this.#mine.add(space);
    return joined;
  }

  leaveSpace(space: string): Promise<unknown> {
    this.#mine.delete(space);
    return this.#invoke("leaveSpace", [space]);
  }

  sendMessage(space: string, text: string, key?: string): Promise<CoreSend> {
    const chosen = key ?? randomKey();
    return this.#send(chosen, () => this.#invoke("sendMessage", [space, text, chosen]));
  }

  pendingSends(): Promise<unknown> {
    return this.#invoke("pendingSends", []);
  }

  retrySend(key: string): Promise<CoreSend> {
    return this.#send(key, () => this.#invoke("retrySend", [key]));
  }

  cancelSend(key: string): Promise<unknown> {
    return this.#invoke("cancelSend", [key]);
  }

  history(space: string, before: number | undefined, limit: number): Promise<unknown> {
    return this.#invoke("history", [space, before, limit]);
  }

  resync(space: string, limit: number): Promise<unknown> {
    return this.#invoke("resync", [space, limit]);
  }

  setPresence(status: string): Promise<unknown> {
    return this.#invoke("setPresence", [status]);
  }

  typing(space: string, typing: boolean): Promise<unknown> {
    return this.#invoke("typing", [space, typing]);
  }

  createDm(peer: string): Promise<unknown> {
    return this.#invoke("createDm", [peer]);
  }

  connectionState(): Promise<unknown> {
    return this.#invoke("connectionState", []);
  }

  networkChanged(online: boolean): void {
    this.#invoke("networkChanged", [online]).catch(() => undefined);
  }

  /**
   * Leaves the tabs. A leader stops serving, disconnects its wasm client (which writes its
   * cursors and outbox out) and only then lets the lock go, so that the next leader opens
   * the database after it is done; calls other tabs make meanwhile wait for that leader.
   */
  async disconnect(): Promise<unknown> {
    const inner = this.#inner;
    if (inner && !this.#closed) {
      this.#stopping = true;
      try {
        await inner.disconnect();
      } finally {
        inner.free();
        this.#leave();
      }
    } else {
      this.#leave();
    }
    return null;
  }

  free(): void {}

  // ----- the calls -----

  /** Makes a send (or retries one) and waits for its outcome by key, from the events. */
  async #send(key: string, make: () => Promise<unknown>): Promise<CoreSend> {
    const outcome = new Promise<string>((resolve, reject) => {
      this.#sends.set(key, { resolve, reject });
    });
    outcome.catch(() => undefined);
    try {
      const made = (await make()) as { key: string; space: string };
      return { key: made.key, space: made.space, acked: () => outcome, free: () => undefined };
    } catch (thrown) {
      this.#sends.delete(key);
      throw thrown;
    }
  }

  /** Runs a call here while leading, or hands it to the leader. */
  #invoke(method: Method, args: readonly unknown[]): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(closedError());
    }
    return new Promise((resolve, reject) => {
      const id = this.#nextCall++;
      this.#calls.set(id, { method, args, resolve, reject });
      this.#dispatch(id);
    });
  }

  #dispatch(id: number): void {
    const call = this.#calls.get(id);
    if (!call) {
      return;
    }
    if (this.#inner) {
      this.#calls.delete(id);
      this.#serve(this.#id, call.method, call.args).then(call.resolve, call.reject);
    } else if (this.#leader !== undefined) {
      this.#say({ t: "call", from: this.#id, to: this.#leader, id, method: call.method, args: call.args });
    }
    // Otherwise it waits for a leader: `#follow` hands it over.
  }

  /** What the leader does with a call from tab `from` (itself included). */
  async #serve(from: string, method: Method, args: readonly unknown[]): Promise<unknown> {
    const inner = this.#inner!;
    const [a, b, c] = args as [never, never, never];
    switch (method) {
      case "joinSpace": {
        const joined = await inner.joinSpace(a);
        const tabs = this.#joins.get(a) ?? new Set<string>();
        tabs.add(from);
        this.#joins.set(a, tabs);
        return joined;
      }
      case "leaveSpace": {
        const tabs = this.#joins.get(a);
        tabs?.delete(from);
        if (tabs && tabs.size > 0) {
          return "null";
        }
        this.#joins.delete(a);
        return inner.leaveSpace(a);
      }
      case "sendMessage":
        return this.#serveSend(inner, a, b, c);
      case "retrySend": {
        const send = await inner.retrySend(a);
        send.free();
        return { key: send.key, space: send.space };
      }
      case "pendingSends":
        return inner.pendingSends();
      case "cancelSend":
        return inner.cancelSend(a);
      case "history":
        return inner.history(a, b, c);
      case "resync":
        return inner.resync(a, b);
      case "setPresence":
        return inner.setPresence(a);
      case "typing":
        return inner.typing(a, b);
      case "createDm":
        return inner.createDm(a);
      case "connectionState":
        return inner.connectionState();
      case "networkChanged":
        inner.networkChanged(a);
        return null;
    }
  }

  /**
   * A send, perhaps made before to a leader that went: if the outbox has its key already
   * (restored from the store), it is that send; if it failed for good, that is the answer.
   */
  async #serveSend(inner: Core, space: string, text: string, key: string): Promise<unknown> {
    try {
      const send = await inner.sendMessage(space, text, key);
      send.free();
      return { key: send.key, space: send.space };
    } catch (thrown) {
      const entries = JSON.parse(String(await inner.pendingSends())) as OutboxEntry[];
      const entry = entries.find((e) => e.key === key && e.space === space);
      if (!entry) {
        throw thrown;
      }
      if (entry.status === "failed" && entry.error) {
        this.#settle(key, entry.error);
      }
      return { key, space };
    }
  }

  // ----- the channel -----

  #say(message: Wire): void {
    if (!this.#closed) {
      this.#channel.postMessage(message);
    }
  }

  #heard(message: Wire): void {
    switch (message.t) {
      case "hello":
        if (this.#inner && !this.#stopping) {
          this.#announce();
        }
        break;
      case "leader":
        if (!this.#inner) {
          this.#follow(message.from, message.session);
        }
        break;
      case "call":
        if (this.#inner && !this.#stopping && message.to === this.#id) {
          const { from, id } = message;
          this.#serve(from, message.method, message.args).then(
            (value) => this.#say({ t: "reply", to: from, id, ok: true, value }),
            (error: unknown) => this.#say({ t: "reply", to: from, id, ok: false, value: plain(error) }),
          );
        }
        break;
      case "reply":
        if (message.to === this.#id) {
          const call = this.#calls.get(message.id);
          this.#calls.delete(message.id);
          if (message.ok) {
            call?.resolve(message.value);
          } else {
            call?.reject(message.value);
          }
        }
        break;
      case "event":
        if (message.from === this.#leader && !this.#inner) {
          this.#deliver(message.event);
        }
        break;
      case "bye":
        if (this.#inner) {
          this.#forget(message.from);
        }
        break;
      case "resign":
        if (message.from === this.#leader) {
          this.#leader = undefined;
        }
        break;
    }
  }

  /** A (new) leader: what was unanswered goes to it, and this tab's spaces are joined again. */
  #follow(leader: string, session: string): void {
    const changed = this.#leader !== leader;
    this.#leader = leader;
    this.#session = session;
    this.#started();
    if (changed) {
      this.#handOver();
    }
  }

  #handOver(): void {
    for (const id of [...this.#calls.keys()]) {
      this.#dispatch(id);
    }
    for (const space of this.#mine) {
      void this.#rejoin(space);
    }
  }

  /**
   * Joins `space` again at a new leader. What was stored since this tab's newest message
   * and before the join (the old leader's cursor may predate it, or there may be none) is
   * read from history and delivered first; live messages wait meanwhile.
   */
  async #rejoin(space: string): Promise<void> {
    const waiting: MeridianEvent[] = [];
    this.#filling.set(space, waiting);
    try {
      const joined = JSON.parse(String(await this.#invoke("joinSpace", [space]))) as JoinedSpace;
      const seen = this.#seen.get(space);
      const gap = seen === undefined ? 0 : joined.headSeq - seen;
      if (gap > FILL_LIMIT) {
        this.#deliver({ type: "continuityLost", space, from: seen! + 1, to: joined.headSeq }, true);
      } else if (gap > 0) {
        const page = JSON.parse(
          String(await this.#invoke("history", [space, joined.headSeq + 1, gap])),
        ) as Message[];
        for (const message of page) {
          this.#deliver({ type: "message", message }, true);
        }
      }
    } catch {
      // The join failed (the leader went again, or the space is gone): the next leader
      // joins it again, or the app hears why from its own calls.
    } finally {
      this.#filling.delete(space);
      for (const event of waiting) {
        this.#deliver(event, true);
      }
    }
  }

  /** This tab got the lock: it opens the database and leads. */
  async #lead(): Promise<void> {
    if (this.#closed) {
      return;
    }
    let inner: Core;
    try {
      inner = await this.#connect();
    } catch (thrown) {
      // Give the lock up (the next tab tries) and tell the app, if it still waits.
      this.#ready?.reject(thrown);
      throw thrown;
    }
    if (this.#closed) {
      await inner.disconnect();
      inner.free();
      return;
    }
    this.#inner = inner;
    this.#leader = this.#id;
    this.#joins.clear();
    this.#announce();
    // Parsed once here; the other tabs get the object (a structured clone), not the text.
    inner.onEvent((text: string | MeridianEvent) => {
      const event = typeof text === "string" ? (JSON.parse(text) as MeridianEvent) : text;
      this.#say({ t: "event", from: this.#id, event });
      this.#deliver(event);
    });
    this.#started();
    this.#handOver();
  }

  #announce(): void {
    this.#say({ t: "leader", from: this.#id, session: this.#inner!.session() });
  }

  #started(): void {
    if (this.#hello !== undefined) {
      clearInterval(this.#hello);
      this.#hello = undefined;
    }
    this.#ready?.resolve();
    this.#ready = undefined;
  }

  /** A follower went: the spaces only it had joined are left. */
  #forget(tab: string): void {
    for (const [space, tabs] of this.#joins) {
      if (tabs.delete(tab) && tabs.size === 0) {
        this.#joins.delete(space);
        this.#inner?.leaveSpace(space).catch(() => undefined);
      }
    }
  }

  /**
   * An event for this tab: each message once (by seq), and the outcome of its sends.
   * `filled`: it comes from `#rejoin`, which holds the space's live messages back.
   */
  #deliver(event: MeridianEvent, filled = false): void {
    if (event.type === "message") {
      const { space, seq } = event.message;
      const waiting = filled ? undefined : this.#filling.get(space);
      if (waiting) {
        waiting.push(event);
        return;
      }
      if (seq <= (this.#seen.get(space) ?? 0)) {
        return;
      }
      this.#seen.set(space, seq);
    } else if (event.type === "messageSent") {
      this.#sends.get(event.key)?.resolve(JSON.stringify(event.receipt));
      this.#sends.delete(event.key);
    } else if (event.type === "sendFailed") {
      this.#settle(event.key, event.error);
    }
    if (this.#listener) {
      this.#listener(event);
    } else if (this.#early.length < EARLY_LIMIT) {
      this.#early.push(event);
    }
  }

  #settle(key: string, error: ErrorInfo): void {
    this.#sends.get(key)?.reject(error);
    this.#sends.delete(key);
  }

  /** Leaves the tabs (the page goes, or the app disconnects). */
  #leave(): void {
    if (this.#closed) {
      return;
    }
    this.#say(this.#inner ? { t: "resign", from: this.#id } : { t: "bye", from: this.#id });
    this.#shut();
  }

  #shut(): void {
    this.#closed = true;
    this.#inner = undefined;
    if (this.#hello !== undefined) {
      clearInterval(this.#hello);
    }
    removeEventListener("pagehide", this.#onPageHide);
    this.#leadership.release();
    this.#channel.close();
    for (const call of this.#calls.values()) {
      call.reject(closedError());
    }
    this.#calls.clear();
    for (const send of this.#sends.values()) {
      send.reject(closedError());
    }
    this.#sends.clear();
  }
}

/** An error as it crosses the channel: its code, message and region (a class does not). */
function plain(error: unknown): ErrorInfo {
  const field = (name: string): unknown =>
    typeof error === "object" && error !== null ? (error as Record<string, unknown>)[name] : undefined;
  const code = field("code");
  const region = field("region");
  return {
    code: (typeof code === "string" ? code : "internal") as ErrorInfo["code"],
    message: String(field("message") ?? error),
    region: typeof region === "string" ? region : null,
  };
}

/**
 * One tab at a time holds it. The Web Locks API where there is one (held until the page
 * goes, even when it crashes); elsewhere (insecure origins, older browsers) a lease in
 * localStorage, renewed every second and taken over three seconds after its holder
 * stopped renewing it (at once when it let go).
 */
abstract class Leadership {
  abstract release(): void;

  static request(name: string, lead: () => Promise<void>): Leadership {
    if (typeof navigator !== "undefined" && navigator.locks !== undefined) {
      return new LockLeadership(name, lead);
    }
    return new LeaseLeadership(name, lead);
  }
}

/** How long a tab that got the lock but could not connect waits before it queues again. */
const LOCK_RETRY_MS = 2000;

class LockLeadership extends Leadership {
  #release: (() => void) | undefined;
  #released = false;
  readonly #held: Promise<void>;

  constructor(
    readonly name: string,
    readonly lead: () => Promise<void>,
  ) {
    super();
    this.#held = new Promise<void>((resolve) => {
      this.#release = resolve;
    });
    this.#queue();
  }

  /** Waits for the lock; held until released. A tab that could not connect queues again. */
  #queue(): void {
    navigator.locks
      .request(this.name, async () => {
        if (this.#released) {
          return;
        }
        await this.lead();
        await this.#held;
      })
      .catch(() => {
        if (!this.#released) {
          setTimeout(() => this.#released || this.#queue(), LOCK_RETRY_MS);
        }
      });
  }

  release(): void {
    this.#released = true;
    this.#release?.();
  }
}

const LEASE_RENEW_MS = 1000;
const LEASE_TTL_MS = 3000;
/** How long a tab that wrote the lease waits before reading it back, to see who won. */
const LEASE_SETTLE_MS = 100;

interface Lease {
  readonly tab: string;
  readonly until: number;
}

class LeaseLeadership extends Leadership {
  readonly #key: string;
  readonly #tab = randomKey();
  readonly #lead: () => Promise<void>;
  readonly #timer: ReturnType<typeof setInterval>;
  #leading = false;
  #released = false;
  readonly #onStorage = (event: StorageEvent): void => {
    if (event.key === this.#key && event.newValue === null) {
      this.#tick();
    }
  };

  constructor(name: string, lead: () => Promise<void>) {
    super();
    this.#key = `${name}:lease`;
    this.#lead = lead;
    this.#timer = setInterval(() => this.#tick(), LEASE_RENEW_MS);
    addEventListener("storage", this.#onStorage);
    this.#tick();
  }

  release(): void {
    this.#released = true;
    clearInterval(this.#timer);
    removeEventListener("storage", this.#onStorage);
    if (this.#leading && this.#read()?.tab === this.#tab) {
      storage()?.removeItem(this.#key);
    }
  }

  #tick(): void {
    const store = storage();
    if (this.#released) {
      return;
    }
    if (store === undefined) {
      // No way to agree with other tabs: this one runs on its own.
      this.#take();
      return;
    }
    if (this.#leading) {
      this.#write();
      return;
    }
    const lease = this.#read();
    if (lease !== undefined && lease.until > Date.now() && lease.tab !== this.#tab) {
      return;
    }
    this.#write();
    setTimeout(() => {
      if (!this.#released && !this.#leading && this.#read()?.tab === this.#tab) {
        this.#take();
      }
    }, LEASE_SETTLE_MS);
  }

  #take(): void {
    if (this.#leading) {
      return;
    }
    this.#leading = true;
    this.#lead().catch(() => {
      // It could not connect: let another tab try.
      this.#leading = false;
      if (this.#read()?.tab === this.#tab) {
        storage()?.removeItem(this.#key);
      }
    });
  }

  #write(): void {
    const lease: Lease = { tab: this.#tab, until: Date.now() + LEASE_TTL_MS };
    storage()?.setItem(this.#key, JSON.stringify(lease));
  }

  #read(): Lease | undefined {
    try {
      const text = storage()?.getItem(this.#key);
      return text ? (JSON.parse(text) as Lease) : undefined;
    } catch {
      return undefined;
    }
  }
}

function storage(): Storage | undefined {
  try {
    return typeof localStorage === "undefined" ? undefined : localStorage;
  } catch {
    return undefined;
  }
}
