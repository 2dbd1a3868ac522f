// Meridian for React Native: a few idiomatic helpers over the generated bindings.
//
// The generated code (./generated, from uniffi-bindgen-react-native) already makes every SDK
// call that talks to the federation return a Promise and every failure a typed
// `MeridianError`; this file adds an async iterator of events, the stable error codes and a
// shorter way to connect. It imports nothing but the generated bindings, so the same file
// runs over the JSI turbo module in an app and over the N-API runtime in Node.

import {
  ClientBuilder,
  ConnectionState,
  Event,
  MeridianError,
  MeridianError_Tags,
  type AppStore,
  type ClientBuilderLike,
  type FederationKey,
  type LogHandler,
  type MeridianClientLike,
  type SubscriptionLike,
  type TokenSource,
} from "./generated/meridian_ffi";

/** What `connectClient` needs. */
export interface ConnectOptions {
  /** The directory's base URL. */
  directoryUrl: string;
  /** The user's token; may be empty when `tokenSource` is given. */
  token?: string;
  /** The federation signing keys the app trusts. */
  federationKeys: FederationKey[];
  /** A folder of the app's for pending sends, cursors and the device key. */
  storeDir?: string;
  /** The app's own store; wins over `storeDir`. With neither, the SDK keeps state in memory. */
  store?: AppStore;
  /** Gives fresh tokens: before the first connect when `token` is empty, and on expiry. */
  tokenSource?: TokenSource;
  /** How much of the SDK's log `logHandler` gets: `error`, `warn`, `info` (default), `debug`, `trace`. */
  logLevel?: "error" | "warn" | "info" | "debug" | "trace";
  /**
   * Gets the SDK's log records (level, target, message, fields; a send's `trace` id among
   * them; never a token or a body), for the whole app: the last one set wins.
   */
  logHandler?: LogHandler;
}

/**
 * Connects a client: reads the federation document and the user's session from the directory
 * and restores the pending sends of the store. Rejects with a `MeridianError`.
 */
export function connectClient(options: ConnectOptions): Promise<MeridianClientLike> {
  const clientOptions = {
    directoryUrl: options.directoryUrl,
    token: options.token ?? "",
    federationKeys: options.federationKeys,
    ...(options.storeDir === undefined ? {} : { storeDir: options.storeDir }),
  };
  let builder: ClientBuilderLike = new ClientBuilder(clientOptions);
  if (options.store !== undefined) {
    builder = builder.store(options.store);
  }
  if (options.tokenSource !== undefined) {
    builder = builder.tokenSource(options.tokenSource);
  }
  if (options.logHandler !== undefined) {
    builder = builder.logHandler(options.logLevel ?? "info", options.logHandler);
  }
  return builder.connect();
}

/**
 * Every event of a client from now on, in order, as an async iterator. Events are buffered
 * without bound, so a slow consumer misses none. Leaving a `for await` loop (or `close()`)
 * cancels the subscription. The client's disconnect ends the iteration after its last event,
 * `ConnectionChanged` to `Closed`.
 */
export function events(client: MeridianClientLike): EventStream {
  return new EventStream(client);
}

export class EventStream implements AsyncIterableIterator<Event> {
  readonly #buffered: Event[] = [];
  /** The `next()` calls waiting for an event, oldest first. */
  readonly #waiting: Array<(result: IteratorResult<Event>) => void> = [];
  /** No more events will be buffered (closed by the app, or the client is closed). */
  #ended = false;
  /** Closed by the app: what was buffered is dropped too. */
  #closed = false;
  readonly #subscription: SubscriptionLike;

  constructor(client: MeridianClientLike) {
    this.#subscription = client.subscribe({ onEvent: (event) => this.#push(event) });
  }

  #push(event: Event): void {
    if (this.#ended) {
      return;
    }
    this.#ended = isClosedEvent(event);
    const waiting = this.#waiting.shift();
    if (waiting === undefined) {
      this.#buffered.push(event);
    } else {
      waiting({ value: event, done: false });
    }
    if (this.#ended) {
      // Calls beyond the last event end the iteration.
      for (const rest of this.#waiting.splice(0)) {
        rest({ value: undefined, done: true });
      }
    }
  }

  next(): Promise<IteratorResult<Event>> {
    const event = this.#buffered.shift();
    if (event !== undefined) {
      return Promise.resolve({ value: event, done: false });
    }
    if (this.#ended) {
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
    });
  }

  /** Stops the events; what was buffered is dropped and a pending `next()` ends. */
  close(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#ended = true;
    this.#buffered.length = 0;
    this.#subscription.cancel();
    for (const waiting of this.#waiting.splice(0)) {
      waiting({ value: undefined, done: true });
    }
  }

  return(): Promise<IteratorResult<Event>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): EventStream {
    return this;
  }
}

function isClosedEvent(event: Event): boolean {
  return (
    Event.ConnectionChanged.instanceOf(event) &&
    ConnectionState.Closed.instanceOf(event.inner.state)
  );
}

/** The stable codes, as in the Rust core, the npm package, Kotlin and Swift. */
export type ErrorCode =
  | "policy_violation"
  | "not_found"
  | "unauthorized"
  | "invalid_input"
  | "directory_unavailable"
  | "closed"
  | "timeout"
  | "protocol"
  | "moved"
  | "transport"
  | "integrity"
  | "internal";

const CODES: Record<MeridianError_Tags, ErrorCode> = {
  [MeridianError_Tags.PolicyViolation]: "policy_violation",
  [MeridianError_Tags.NotFound]: "not_found",
  [MeridianError_Tags.Unauthorized]: "unauthorized",
  [MeridianError_Tags.InvalidInput]: "invalid_input",
  [MeridianError_Tags.DirectoryUnavailable]: "directory_unavailable",
  [MeridianError_Tags.Closed]: "closed",
  [MeridianError_Tags.Timeout]: "timeout",
  [MeridianError_Tags.Protocol]: "protocol",
  [MeridianError_Tags.Moved]: "moved",
  [MeridianError_Tags.Transport]: "transport",
  [MeridianError_Tags.Integrity]: "integrity",
  [MeridianError_Tags.Internal]: "internal",
};

/** The stable code of a `MeridianError`, or `undefined` for anything else thrown. */
export function errorCode(error: unknown): ErrorCode | undefined {
  const isMeridianError =
    typeof error === "object" && error !== null && MeridianError.instanceOf(error);
  return isMeridianError ? CODES[error.tag] : undefined;
}
