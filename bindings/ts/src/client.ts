// The Client: the Rust core's one API with TypeScript's conventions (camelCase, Promises,
// typed events, Error subclasses). It converts and forwards; every decision (which region,
// whether the policy allows it, retries, ordering) is the core's.

import type { WasmClient } from "../wasm/meridian_wasm.js";
import { ClosedError, InternalError, toMeridianError } from "./errors.js";
import { TabCore, tabsName, tabsSupported } from "./tabs.js";
import type {
  ConnectOptions,
  ConnectionState,
  EventOf,
  EventType,
  JoinedSpace,
  LogHandler,
  LogLevel,
  LogRecord,
  MeridianEvent,
  Message,
  OutboxEntry,
  PresenceStatus,
  SendReceipt,
  Session,
  SpaceLocation,
} from "./types.js";

type WasmClientClass = typeof WasmClient;

/**
 * Where the wasm module comes from: a URL to fetch, a `fetch` Response (or its Promise),
 * the bytes, or a module already compiled. Left out, the package finds the file it ships
 * next to its own code (`new URL("../wasm/…", import.meta.url)`), which works where that
 * file is served as is (webpack 5, `vite build`, Node, an import map).
 */
export type WasmSource =
  | string
  | URL
  | Request
  | Response
  | Promise<Response>
  | BufferSource
  | WebAssembly.Module;

/** What `init` takes. */
export interface InitOptions {
  /** The wasm module, for apps and bundlers that serve it themselves. */
  readonly wasm?: WasmSource;
}

/** @internal What an entry point's wasm module offers: the client, and logs in debug builds. */
export interface Loaded {
  readonly Client: WasmClientClass;
  /** `setLogHandler(level, handler)`, where logs are compiled in (`@meridian/sdk/debug`). */
  readonly setLogHandler?: (level: string, handler: ((text: string) => void) | undefined) => void;
}

/** @internal How the entry point (browser or Node) instantiates the wasm module. */
export type Runtime = (wasm: WasmSource | undefined) => Promise<Loaded>;

let runtime: Runtime | undefined;
let loaded: Promise<Loaded> | undefined;

/** @internal Set by the entry point (browser or Node), the only side effect of either. */
export function setRuntime(entry: Runtime): void {
  runtime = entry;
}

/**
 * Loads and instantiates the wasm module. `Client.connect` does it by itself from the
 * default location; call `init` first to say where the module is (`{ wasm: url }`, a
 * Response, the bytes) or to load it ahead of time. The first call decides: later ones
 * share its result. A load that failed is tried again by the next call.
 */
export function init(options: InitOptions = {}): Promise<void> {
  return load(options.wasm).then(() => undefined);
}

function load(wasm?: WasmSource): Promise<Loaded> {
  if (loaded) {
    return loaded;
  }
  if (!runtime) {
    return Promise.reject(
      new InternalError(
        "the Meridian runtime is not loaded: import @meridian/sdk by its package name, " +
          "so that its browser or Node entry is used",
      ),
    );
  }
  const attempt = runtime(wasm).catch((thrown: unknown) => {
    loaded = undefined;
    throw new InternalError(`the Meridian wasm module could not be loaded: ${String(thrown)}`, {
      cause: thrown,
    });
  });
  loaded = attempt;
  return attempt;
}

/**
 * @internal What a Client drives: the wasm client itself, or (in a tab that does not lead
 * the others, see tabs.ts) the leading tab's through a channel. It takes and gives what
 * the wasm client does: JSON text, errors with a `code`. Events come as the wasm's JSON
 * text, or already parsed (a tab parses each once, to share it with the others).
 */
export interface Core {
  session(): string;
  onEvent(listener: (event: string | MeridianEvent) => void): void;
  joinSpace(space: string): Promise<unknown>;
  leaveSpace(space: string): Promise<unknown>;
  sendMessage(space: string, text: string, key?: string): Promise<CoreSend>;
  pendingSends(): Promise<unknown>;
  retrySend(key: string): Promise<CoreSend>;
  cancelSend(key: string): Promise<unknown>;
  history(space: string, before: number | undefined, limit: number): Promise<unknown>;
  resync(space: string, limit: number): Promise<unknown>;
  setPresence(status: string): Promise<unknown>;
  typing(space: string, typing: boolean): Promise<unknown>;
  createDm(peer: string): Promise<unknown>;
  connectionState(): Promise<unknown>;
  networkChanged(online: boolean): void;
  disconnect(): Promise<unknown>;
  free(): void;
}

/** @internal A send as a Core hands it back. */
export interface CoreSend {
  readonly key: string;
  readonly space: string;
  acked(): Promise<unknown>;
  free(): void;
}

let warnedNoLogs = false;

/** Sends the core's log records to `handler` (the console without one), where compiled in. */
function setLogs(module: Loaded, level: LogLevel, handler: LogHandler | undefined): void {
  if (!module.setLogHandler) {
    if (level !== "off" && !warnedNoLogs) {
      warnedNoLogs = true;
      console.warn(
        "Meridian: logs are compiled out of @meridian/sdk to keep it small; " +
          "import @meridian/sdk/debug instead to get them",
      );
    }
    return;
  }
  const to = handler ?? toConsole;
  try {
    module.setLogHandler(level, (text: string) => to(JSON.parse(text) as LogRecord));
  } catch (thrown) {
    throw toMeridianError(thrown);
  }
}

function toConsole(record: LogRecord): void {
  const fields = Object.entries(record.fields)
    .map(([name, value]) => ` ${name}=${value}`)
    .join("");
  const line = `[meridian] ${record.target}: ${record.message}${fields}`;
  if (record.level === "error") {
    console.error(line);
  } else if (record.level === "warn") {
    console.warn(line);
  } else if (record.level === "info") {
    console.info(line);
  } else {
    console.debug(line);
  }
}

/** How many events are kept for the app's first listener while it has none (the core's bound). */
const UNHEARD_LIMIT = 1024;

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
  readonly #inner: CoreSend;
  #receipt: Promise<SendReceipt> | undefined;

  /** @internal */
  constructor(inner: CoreSend) {
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
  readonly #inner: Core;
  readonly #listeners = new Map<EventType | "*", Set<Listener>>();
  readonly #streams = new Set<EventStream>();
  readonly #session: Session;
  /** Events that came before the app's first listener or stream (newest kept). */
  #unheard: MeridianEvent[] | undefined = [];
  #state: ConnectionState;
  #closed = false;

  private constructor(inner: Core, state: ConnectionState) {
    this.#inner = inner;
    this.#session = JSON.parse(inner.session()) as Session;
    this.#state = state;
    // Subscribed from the start, so that `state` follows every change; what comes before
    // the app listens waits in `#unheard` for its first listener, as the core would keep it.
    inner.onEvent((event: string | MeridianEvent) =>
      this.#receive(typeof event === "string" ? (JSON.parse(event) as MeridianEvent) : event),
    );
  }

  /**
   * Connects: reads the federation document and the user's session from the directory
   * and restores pending sends from the store. Region sockets open when first needed.
   */
  static async connect(options: ConnectOptions): Promise<Client> {
    const module = await load();
    const Wasm = module.Client;
    const { tokenProvider, store, tabs, logLevel, logHandler, ...rest } = options;
    if (logLevel !== undefined || logHandler !== undefined) {
      setLogs(module, logLevel ?? "info", logHandler);
    }
    // Where IndexedDB exists it is the default; elsewhere (Node) memory is.
    const platformDefault = typeof indexedDB === "undefined" ? "memory" : "indexeddb";
    const chosen = typeof store === "string" ? store : store === undefined ? platformDefault : undefined;
    const json = JSON.stringify({ ...rest, store: chosen });
    const custom = typeof store === "object" ? store : undefined;
    const open = (): Promise<Core> =>
      call(() => Wasm.connect(json, tokenProvider, custom) as Promise<WasmClient>);
    // The tabs of one IndexedDB database share one client (tabs.ts): one outbox, one cursor each.
    const inner =
      chosen === "indexeddb" && tabs !== false && tabsSupported()
        ? await call(() => TabCore.start(tabsName(options.storeName ?? "meridian"), open))
        : await open();
    const state = await callJson<ConnectionState>(() => inner.connectionState());
    return new Client(inner, state);
  }

  /**
   * Whether this client runs the connection itself: false in a tab that hands its calls
   * to the tab that leads the others of its origin and database (see `tabs` in
   * `ConnectOptions`). It becomes true when that tab goes and this one takes over.
   */
  get isLeadingTab(): boolean {
    return this.#inner instanceof TabCore ? this.#inner.leading : true;
  }

  /**
   * The state of the client as a whole, now: what a status bar shows. It changes with
   * each `connection` event (`closed` once disconnected); for React, `useConnectionState`.
   */
  get state(): ConnectionState {
    return this.#state;
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
    this.#heard();
    return () => {
      set.delete(stored);
    };
  }

  /** Every event from now on, for `for await (const event of client.events())`. */
  events(): EventStream {
    const stream: EventStream = new EventStream(() => this.#streams.delete(stream));
    this.#streams.add(stream);
    this.#heard();
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
    const inner = await call(() => this.#open().sendMessage(space, text));
    return new PendingSend(inner);
  }

  /** Every send not yet stored by its region, in the order made. */
  pendingSends(): Promise<OutboxEntry[]> {
    return callJson(() => this.#open().pendingSends());
  }

  /** Puts a send that failed for good back in line. */
  async retrySend(key: string): Promise<PendingSend> {
    const inner = await call(() => this.#open().retrySend(key));
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
    if (this.#state.state !== "closed") {
      this.#receive({ type: "connection", state: { state: "closed" } });
    }
    for (const stream of [...this.#streams]) {
      stream.close();
    }
    this.#inner.free();
  }

  /**
   * The app listens: what happened before it did goes out to its listeners now, after
   * the call that registered them returns (so every listener registered in the same turn
   * gets it too).
   */
  #heard(): void {
    const unheard = this.#unheard;
    if (unheard === undefined) {
      return;
    }
    this.#unheard = undefined;
    if (unheard.length > 0) {
      queueMicrotask(() => unheard.forEach((event) => this.#dispatch(event)));
    }
  }

  #receive(event: MeridianEvent): void {
    if (event.type === "connection") {
      this.#state = event.state;
    }
    if (this.#unheard === undefined) {
      this.#dispatch(event);
      return;
    }
    if (this.#unheard.length === UNHEARD_LIMIT) {
      this.#unheard.shift();
    }
    this.#unheard.push(event);
  }

  /** The core, unless this client was disconnected (the wasm's memory is freed then). */
  #open(): Core {
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
