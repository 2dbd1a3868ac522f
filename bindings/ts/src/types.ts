// The shapes of everything the SDK hands to or takes from the app. They mirror, field for
// field, the JSON that sdk-wasm/src/convert.rs produces: change both together.

import type { ErrorCode } from "./errors.js";

/** A key the federation signs its document with (ed25519, public half in base64). */
export interface FederationKey {
  readonly id: string;
  readonly publicKey: string;
}

/** A bearer token and, if known, when it expires (ms since the Unix epoch). */
export interface Token {
  readonly token: string;
  readonly expiresAtMs?: number;
}

/**
 * Returns a fresh token: called before the first connect when no `token` is given, ahead
 * of expiry, and whenever the directory or a region rejects the current one.
 */
export type TokenProvider = () => Promise<string | Token>;

/**
 * Where pending sends, delivery cursors and the device key pair are kept. `put` must be
 * durable when its Promise resolves. Namespaces and keys are identifiers
 * (letters, digits, `-`, `_`, `.`, `:`).
 */
export interface Store {
  put(namespace: string, key: string, value: Uint8Array): Promise<void>;
  delete(namespace: string, key: string): Promise<void>;
  /** Every record of the namespace, as `[key, value]` pairs. */
  list(namespace: string): Promise<ReadonlyArray<readonly [string, Uint8Array]>>;
}

/** How to reach the federation, and who is asking. */
export interface ConnectOptions {
  /** The directory's base URL, e.g. `https://directory.example.com`. */
  readonly directoryUrl: string;
  /** The user's bearer token; may be left out when `tokenProvider` is set. */
  readonly token?: string;
  /** Renews the token before it expires and when it is rejected. */
  readonly tokenProvider?: TokenProvider;
  /** The federation signing keys the app trusts: documents signed by others are refused. */
  readonly federationKeys: readonly FederationKey[];
  /**
   * `"indexeddb"` (the browser default: sends survive a reload), `"memory"` (the Node
   * default), or an object of your own.
   */
  readonly store?: "indexeddb" | "memory" | Store;
  /** The IndexedDB database name (default `meridian`): one per signed-in account. */
  readonly storeName?: string;
  /** Follow the platform's `online`/`offline` events (default `true` where they exist). */
  readonly watchNetwork?: boolean;
  /**
   * Share one client among this origin's tabs that use the same IndexedDB database
   * (default `true` in browsers): one tab at a time runs the outbox and the sockets, the
   * others hand it their calls and hear every event; when it closes, another takes over
   * with nothing lost. `false` gives this tab a client of its own (don't open the same
   * database from two such tabs).
   */
  readonly tabs?: boolean;
  /**
   * How much of the SDK's log to hand to `logHandler` (or to the console, without one):
   * `"off"` (the default), `"error"`, `"warn"`, `"info"`, `"debug"` (each connection and
   * send, with its trace id) or `"trace"`. The default build compiles logs out to stay
   * small: import `@meridian/sdk/debug` instead of `@meridian/sdk` to get them. For the
   * whole page (or process): the last client to set it wins.
   */
  readonly logLevel?: LogLevel;
  /** Gets each log record. A record never holds a token, a key or a message body. */
  readonly logHandler?: LogHandler;
}

export type LogLevel = "off" | "error" | "warn" | "info" | "debug" | "trace";

/** One record of the SDK's log. */
export interface LogRecord {
  readonly level: Exclude<LogLevel, "off">;
  /** The module that logged it, e.g. `meridian::session`. */
  readonly target: string;
  /** What happened, e.g. `send stored`. */
  readonly message: string;
  /** E.g. `{ region: "eu-west" }`, `{ trace: "4bf9…", space: "acme:general", seq: "12" }`. */
  readonly fields: Readonly<Record<string, string>>;
}

export type LogHandler = (record: LogRecord) => void;

/** Who the client is. */
export interface Session {
  readonly user: string;
  readonly displayName: string;
  readonly company: string;
  readonly homeRegion: string;
  readonly policy: string;
  readonly flavor: string | null;
}

/** A message of a space: each arrives exactly once, in `seq` order. */
export interface Message {
  readonly space: string;
  /** Its position in the space: 1, 2, 3, ... with no gaps. */
  readonly seq: number;
  readonly id: string;
  readonly sender: string;
  /** The text (opened on the device when it travelled sealed). */
  readonly body: string;
  /** When the region stored it (ms since the Unix epoch). */
  readonly sentAtMs: number;
}

/** What the region answered when it stored a message. */
export interface SendReceipt {
  readonly messageId: string;
  readonly seq: number;
  readonly sentAtMs: number;
}

/** A space the user joined. */
export interface JoinedSpace {
  readonly space: string;
  /** The newest seq when joined: messages after it arrive as events. */
  readonly headSeq: number;
}

/** Where a space is housed. */
export interface SpaceLocation {
  readonly space: string;
  readonly region: string;
  readonly company: string;
  readonly kind: "channel" | "dm";
  /** `dr`: data residency (at rest); `ds`: data sovereignty (sealed in transit too). */
  readonly residency: "dr" | "ds";
}

/** An error as carried inside an event or an outbox entry. */
export interface ErrorInfo {
  readonly code: ErrorCode;
  readonly message: string;
  readonly region: string | null;
}

/** A send not yet stored by its region. */
export interface OutboxEntry {
  readonly key: string;
  readonly space: string;
  readonly body: string;
  readonly status: "queued" | "failed";
  /** Why it failed for good (when `status` is `failed`). */
  readonly error: ErrorInfo | null;
}

/** The state of one region's connection, or of the client as a whole. */
export type ConnectionState =
  | { readonly state: "idle" }
  | { readonly state: "connecting" }
  | { readonly state: "connected" }
  | { readonly state: "offline" }
  | { readonly state: "reconnecting"; readonly attempt: number; readonly retryInMs: number }
  | { readonly state: "closed" };

export type PresenceStatus = "online" | "away" | "offline";

/** Something the user's home region tells them, wherever it happened. */
export type Notification =
  | {
      readonly kind: "mention";
      readonly space: string;
      readonly messageId: string;
      readonly seq: number;
      readonly from: string;
    }
  | { readonly kind: "dmInvite"; readonly space: string; readonly from: string }
  | { readonly kind: "contactPresence"; readonly user: string; readonly status: PresenceStatus };

/** Everything the app hears from the client, told apart by `type`. */
export type MeridianEvent =
  | { readonly type: "message"; readonly message: Message }
  | {
      readonly type: "presence";
      readonly user: string;
      readonly status: PresenceStatus;
      readonly space: string;
    }
  | {
      readonly type: "typing";
      readonly space: string;
      readonly user: string | null;
      readonly typing: boolean;
    }
  /** The client as a whole: what a status bar shows. */
  | { readonly type: "connection"; readonly state: ConnectionState }
  | { readonly type: "regionConnection"; readonly region: string; readonly state: ConnectionState }
  /** The user's policy stopped something before it left the device. */
  | {
      readonly type: "policyBlocked";
      readonly region: string;
      readonly space: string | null;
      readonly reason: string;
    }
  | { readonly type: "subscriptionLost"; readonly space: string; readonly error: ErrorInfo }
  /** Messages `from`..`to` can't be delivered: call `resync(space)` and rebuild the view. */
  | {
      readonly type: "continuityLost";
      readonly space: string;
      readonly from: number;
      readonly to: number | null;
    }
  | {
      readonly type: "messageSent";
      readonly key: string;
      readonly space: string;
      readonly receipt: SendReceipt;
    }
  | {
      readonly type: "sendFailed";
      readonly key: string;
      readonly space: string;
      readonly error: ErrorInfo;
    }
  | { readonly type: "federationDocumentRefused"; readonly error: ErrorInfo }
  | { readonly type: "notification"; readonly notification: Notification }
  | { readonly type: "regionProblem"; readonly region: string; readonly error: ErrorInfo };

export type EventType = MeridianEvent["type"];

/** The event of one type, e.g. `EventOf<"message">`. */
export type EventOf<T extends EventType> = Extract<MeridianEvent, { readonly type: T }>;
