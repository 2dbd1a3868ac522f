// The Client: the Rust core's one API with TypeScript's conventions (camelCase, Promises,
// typed events, Error subclasses). It converts and forwards; every decision (which region,
// whether the policy allows it, retries, ordering) is the core's.

import type { WasmClient, WasmPendingSend } from "../wasm/meridian_wasm.js";
import { ClosedError, toMeridianError } from "./errors.js";
import type {
  ConnectOptions,
  ConnectionState,
  EventOf,
  EventType,
  JoinedSpace,
  MeridianEvent,
  Message,
  OutboxEntry,
  PresenceStatus,
  SendReceipt,
  Session,
  SpaceLocation,
} from "./types.js";

type WasmClientClass = typeof WasmClient;

let loader: (() => Promise<WasmClientClass>) | undefined;

/** Set by the entry point (browser or Node): how to instantiate the wasm module. */
export function setLoader(load: () => Promise<WasmClientClass>): void {
  loader = load;
}

async function call<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (thrown) {
    throw toMeridianError(thrown);
  }
}

async function callJson<T>(work: () => Promise<unknown>): Promise<T> {
  const text = await call(work);
  return JSON.parse(String(text)) as T;
}

/**
 * A stream of events for `for await`. Events are buffered from the moment the stream is
 * made; `close()` (or leaving the loop) stops it.
 */
export class EventStream implements AsyncIterator<MeridianEvent, undefined, undefined> {
  readonly #buffer: MeridianEvent[] = [];
  readonly #waiting: Array<(result: IteratorResult<MeridianEvent, undefined>) => void> = [];
  readonly #onClose: () => void;
  #closed = false;

  /** @internal */
  constructor(onClose: () => void) {
    this.#onClose = onClose;
  }

  /** @internal */
  push(event: MeridianEvent): void {
    const waiter = this.#waiting.shift();
    if (waiter) {
      waiter({ value: event, done: false });
    } else if (!this.#closed) {
      this.#buffer.push(event);
    }
  }

  next(): Promise<IteratorResult<MeridianEvent, undefined>> {
    const event = this.#buffer.shift();
    if (event !== undefined) {
      return Promise.resolve({ value: event, done: false });
    }
    if (this.#closed) {
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  return(): Promise<IteratorResult<MeridianEvent, undefined>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Stops the stream: pending `next()` calls resolve as done. */
  close(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#onClose();
    for (const waiter of this.#waiting.splice(0)) {
      waiter({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): EventStream {
    return this;
  }
}

/**
 * A send the outbox accepted and persisted: it reaches its region exactly once, across
 * reconnects and reloads, or fails for good with a reason.
 */
export class PendingSend {
  /** The idempotency key (to retry or cancel the send). */
  readonly key: string;
  readonly space: string;
  readonly #inner: WasmPendingSend;
  #receipt: Promise<SendReceipt> | undefined;

  /** @internal */
  constructor(inner: WasmPendingSend) {
    this.#inner = inner;
    this.key = inner.key;
    this.space = inner.space;
  }

  /** The region's receipt, once it has stored the message. */
  acked(): Promise<SendReceipt> {
    this.#receipt ??= callJson<SendReceipt>(() => this.#inner.acked()).finally(() =>
      this.#inner.free(),
    );
    return this.#receipt;
  }
}

type Listener = (event: MeridianEvent) => void;

/** A connected Meridian client. */
export class Client {
  readonly #inner: WasmClient;
  readonly #listeners = new Map<EventType | "*", Set<Listener>>();
  readonly #streams = new Set<EventStream>();
  readonly #session: Session;
  #listening = false;
  #closed = false;

  private constructor(inner: WasmClient) {
    this.#inner = inner;
    this.#session = JSON.parse(inner.session()) as Session;
  }

  /**
   * Connects: reads the federation document and the user's session from the directory
   * and restores pending sends from the store. Region sockets open when first needed.
   */
  static async connect(options: ConnectOptions): Promise<Client> {
    if (!loader) {
      throw toMeridianError({ code: "internal", message: "the Meridian runtime is not loaded" });
    }
    const Wasm = await loader();
    const { tokenProvider, store, ...rest } = options;
    // Where IndexedDB exists it is the default; elsewhere (Node) memory is.
    const platformDefault = typeof indexedDB === "undefined" ? "memory" : "indexeddb";
    const json = JSON.stringify({
      ...rest,
      store: typeof store === "string" ? store : store === undefined ? platformDefault : undefined,
    });
    const custom = typeof store === "object" ? store : undefined;
    const inner = await call(() => Wasm.connect(json, tokenProvider, custom));
    return new Client(inner);
  }

  /** Who this client is. */
  get session(): Session {
    return this.#session;
  }

  /**
   * Calls `listener` with every event of `type` (or of every type, for `"*"`). Returns a
   * function that removes it. The first listener or stream of a client also gets the
   * events from before it, such as the outcome of sends restored from the store.
   */
  on<T extends EventType>(type: T, listener: (event: EventOf<T>) => void): () => void;
  on(type: "*", listener: (event: MeridianEvent) => void): () => void;
  on(type: EventType | "*", listener: (event: never) => void): () => void {
    const set = this.#listeners.get(type) ?? new Set<Listener>();
    const stored = listener as Listener;
    set.add(stored);
    this.#listeners.set(type, set);
    this.#listen();
    return () => {
      set.delete(stored);
    };
  }

  /** Every event from now on, for `for await (const event of client.events())`. */
  events(): EventStream {
    const stream: EventStream = new EventStream(() => this.#streams.delete(stream));
    this.#streams.add(stream);
    this.#listen();
    if (this.#closed) {
      stream.close();
      this.#streams.delete(stream);
    }
    return stream;
  }

  /** Joins a space: its messages arrive as `message` events from now on, across reconnects. */
  joinSpace(space: string): Promise<JoinedSpace> {
    return callJson(() => this.#open().joinSpace(space));
  }

  leaveSpace(space: string): Promise<void> {
    return callJson(() => this.#open().leaveSpace(space));
  }

  /**
   * Sends a message. Resolves once the send is persisted in the outbox; refused at once
   * (with nothing stored or sent) when the user's policy forbids the space's region.
   */
  async sendMessage(space: string, text: string): Promise<PendingSend> {
    const inner = await call(() => this.#open().sendMessage(space, text) as Promise<WasmPendingSend>);
    return new PendingSend(inner);
  }

  /** Every send not yet stored by its region, in the order made. */
  pendingSends(): Promise<OutboxEntry[]> {
    return callJson(() => this.#open().pendingSends());
  }

  /** Puts a send that failed for good back in line. */
  async retrySend(key: string): Promise<PendingSend> {
    const inner = await call(() => this.#open().retrySend(key) as Promise<WasmPendingSend>);
    return new PendingSend(inner);
  }

  /** Removes a send that is not on its way yet. */
  cancelSend(key: string): Promise<void> {
    return callJson(() => this.#open().cancelSend(key));
  }

  /** A page of history, oldest first: up to `limit` messages before `before` (or the newest). */
  history(space: string, options: { before?: number; limit?: number } = {}): Promise<Message[]> {
    return callJson(() => this.#open().history(space, options.before, options.limit ?? 50));
  }

  /** The newest page of a space: what to rebuild the view from after `continuityLost`. */
  resync(space: string, limit = 50): Promise<Message[]> {
    return callJson(() => this.#open().resync(space, limit));
  }

  setPresence(status: PresenceStatus): Promise<void> {
    return callJson(() => this.#open().setPresence(status));
  }

  /** Tells the space's members the user is (or stopped) typing. Best effort. */
  typing(space: string, typing: boolean): Promise<void> {
    return callJson(() => this.#open().typing(space, typing));
  }

  /** Creates (or finds) the DM with `peer`, in a region both users' policies permit. */
  createDm(peer: string): Promise<SpaceLocation> {
    return callJson(() => this.#open().createDm(peer));
  }

  /** The state of the client as a whole (`closed` once disconnected). */
  connectionState(): Promise<ConnectionState> {
    if (this.#closed) {
      return Promise.resolve({ state: "closed" });
    }
    return callJson(() => this.#open().connectionState());
  }

  /** Tells the client the network went away or came back (browsers do this by themselves). */
  networkChanged(online: boolean): void {
    if (!this.#closed) {
      this.#inner.networkChanged(online);
    }
  }

  /** Disconnects from every region; event streams end. Pending sends stay in the store. */
  async disconnect(): Promise<void> {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    await call(() => this.#inner.disconnect() as Promise<unknown>);
    for (const stream of [...this.#streams]) {
      stream.close();
    }
    this.#inner.free();
  }

  /**
   * Subscribes to the core's events when the app first listens, not before: the core
   * keeps what happened until its first subscriber (the outcome of sends restored from
   * the store goes out as soon as the client connects), so that listener gets it too.
   */
  #listen(): void {
    if (this.#listening || this.#closed) {
      return;
    }
    this.#listening = true;
    this.#inner.onEvent((text: string) => this.#dispatch(JSON.parse(text) as MeridianEvent));
  }

  /** The wasm client, unless this client was disconnected (its memory is freed then). */
  #open(): WasmClient {
    if (this.#closed) {
      throw new ClosedError("the client is disconnected");
    }
    return this.#inner;
  }

  #dispatch(event: MeridianEvent): void {
    for (const stream of this.#streams) {
      stream.push(event);
    }
    for (const key of [event.type, "*"] as const) {
      for (const listener of this.#listeners.get(key) ?? []) {
        try {
          listener(event);
        } catch (thrown) {
          // A listener's failure is the app's: report it as the platform reports an
          // uncaught error, and keep delivering to the others.
          queueMicrotask(() => {
            throw thrown;
          });
        }
      }
    }
  }
}
