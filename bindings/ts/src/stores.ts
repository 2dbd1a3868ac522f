// Observable views of what a client knows, for UI code: each is an external store in the
// shape React's `useSyncExternalStore` reads (and Svelte, Vue or Solid can wrap): a
// `subscribe(onChange)` and a `getSnapshot()` that returns the same object until something
// changed. They hold no logic of delivery: order, exactly-once and retries are the core's;
// a store only keeps what the core reported, bounded, in the shape a screen draws.

import type { Client, PendingSend } from "./client.js";
import { toMeridianError, type MeridianError } from "./errors.js";
import type { ConnectionState, ErrorInfo, Message, PresenceStatus } from "./types.js";

/** A value that changes, and a way to hear that it did. */
export interface ExternalStore<T> {
  /** Calls `onChange` after each change of the snapshot; returns the function that stops it. */
  subscribe(onChange: () => void): () => void;
  /** The current value: the same object until it changes. */
  getSnapshot(): T;
}

/** The snapshot, the listeners, and nothing else. */
class Observable<T> implements ExternalStore<T> {
  #snapshot: T;
  readonly #listeners = new Set<() => void>();

  constructor(initial: T) {
    this.#snapshot = initial;
  }

  readonly subscribe = (onChange: () => void): (() => void) => {
    this.#listeners.add(onChange);
    return () => {
      this.#listeners.delete(onChange);
    };
  };

  readonly getSnapshot = (): T => this.#snapshot;

  protected update(next: T): void {
    this.#snapshot = next;
    for (const listener of [...this.#listeners]) {
      listener();
    }
  }
}

/** A send of this space not yet stored by its region, as a screen lists it. */
export interface PendingItem {
  /** The idempotency key (a local placeholder while `saving`). */
  readonly key: string;
  readonly body: string;
  /**
   * `saving`: handed to the client, not yet in the outbox; `queued`: persisted, on its way;
   * `failed`: refused for good (see `error`; `retry` or `cancel` it).
   */
  readonly state: "saving" | "queued" | "failed";
  readonly error: ErrorInfo | null;
}

/** What a space's screen shows. */
export interface SpaceSnapshot {
  readonly space: string;
  /** `joining` until the region answered; `failed` if it refused (see `error`). */
  readonly status: "joining" | "joined" | "failed";
  readonly error: MeridianError | null;
  /** In `seq` order, each once: the newest `keep` of history and live messages. */
  readonly messages: readonly Message[];
  /** The sends of this space not yet stored, in the order made. */
  readonly pending: readonly PendingItem[];
  /** Set when messages can't be delivered: call `resync()` to rebuild the view. */
  readonly continuityLost: { readonly from: number; readonly to: number | null } | null;
}

/** How much a space store keeps and loads. */
export interface SpaceStoreOptions {
  /** The newest messages kept (default 200): older ones are dropped from the snapshot. */
  readonly keep?: number;
  /** How many messages of history to load on join (default 50; 0 for none). */
  readonly history?: number;
}

/** Orders by seq, drops repeats, keeps the newest `keep`. */
function merged(current: readonly Message[], more: readonly Message[], keep: number): Message[] {
  const bySeq = new Map<number, Message>();
  for (const message of [...current, ...more]) {
    bySeq.set(message.seq, message);
  }
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(-keep);
}

let placeholders = 0;

/**
 * One space, live: joins it, loads its recent history, follows its messages, its pending
 * sends and continuity. `close()` stops listening (the client stays joined).
 */
export class SpaceStore extends Observable<SpaceSnapshot> {
  readonly #client: Client;
  readonly #keep: number;
  readonly #stop: Array<() => void>;
  #closed = false;

  constructor(client: Client, space: string, options: SpaceStoreOptions = {}) {
    super({
      space,
      status: "joining",
      error: null,
      messages: [],
      pending: [],
      continuityLost: null,
    });
    this.#client = client;
    this.#keep = Math.max(1, options.keep ?? 200);
    const mine = (event: { readonly space: string }): boolean => event.space === space;
    this.#stop = [
      client.on("message", ({ message }) => {
        if (mine(message)) {
          this.#patch({ messages: merged(this.#now.messages, [message], this.#keep) });
        }
      }),
      client.on("messageSent", (event) => {
        if (mine(event)) {
          this.#patch({ pending: this.#now.pending.filter((p) => p.key !== event.key) });
        }
      }),
      client.on("sendFailed", (event) => {
        if (mine(event)) {
          this.#patch({
            pending: this.#now.pending.map((p) =>
              p.key === event.key ? { ...p, state: "failed" as const, error: event.error } : p,
            ),
          });
        }
      }),
      client.on("continuityLost", (event) => {
        if (mine(event)) {
          this.#patch({ continuityLost: { from: event.from, to: event.to } });
        }
      }),
    ];
    void this.#start(options.history ?? 50);
  }

  get #now(): SpaceSnapshot {
    return this.getSnapshot();
  }

  #patch(change: Partial<SpaceSnapshot>): void {
    if (!this.#closed) {
      this.update({ ...this.#now, ...change });
    }
  }

  async #start(history: number): Promise<void> {
    const space = this.#now.space;
    try {
      await this.#client.joinSpace(space);
      this.#patch({ status: "joined" });
      const [recent, outbox] = await Promise.all([
        history > 0 ? this.#client.history(space, { limit: history }) : Promise.resolve([]),
        this.#client.pendingSends(),
      ]);
      const known = new Set(this.#now.pending.map((p) => p.key));
      const restored: PendingItem[] = outbox
        .filter((entry) => entry.space === space && !known.has(entry.key))
        .map((entry) => ({
          key: entry.key,
          body: entry.body,
          state: entry.status,
          error: entry.error,
        }));
      this.#patch({
        messages: merged(this.#now.messages, recent, this.#keep),
        pending: [...restored, ...this.#now.pending],
      });
    } catch (thrown) {
      this.#patch({ status: "failed", error: toMeridianError(thrown) });
    }
  }

  /**
   * Sends `text`: it shows in `pending` at once (`saving`, then `queued`) and leaves it
   * when stored, when it arrives as a message. Rejects, and drops the item, when the
   * client refuses it (policy, bad input).
   */
  async send(text: string): Promise<PendingSend> {
    const placeholder = `saving:${++placeholders}`;
    this.#patch({
      pending: [...this.#now.pending, { key: placeholder, body: text, state: "saving", error: null }],
    });
    try {
      const sent = await this.#client.sendMessage(this.#now.space, text);
      this.#patch({
        pending: this.#now.pending.map((p) =>
          p.key === placeholder ? { ...p, key: sent.key, state: "queued" as const } : p,
        ),
      });
      return sent;
    } catch (thrown) {
      this.#patch({ pending: this.#now.pending.filter((p) => p.key !== placeholder) });
      throw thrown;
    }
  }

  /** Puts a failed send back in line. */
  async retry(key: string): Promise<void> {
    const sent = await this.#client.retrySend(key);
    this.#patch({
      pending: [
        ...this.#now.pending.filter((p) => p.key !== key),
        ...this.#now.pending
          .filter((p) => p.key === key)
          .map((p) => ({ ...p, key: sent.key, state: "queued" as const, error: null })),
      ],
    });
  }

  /** Removes a send that is not on its way yet. */
  async cancel(key: string): Promise<void> {
    await this.#client.cancelSend(key);
    this.#patch({ pending: this.#now.pending.filter((p) => p.key !== key) });
  }

  /** After `continuityLost`: replaces the messages with the newest page and clears the mark. */
  async resync(): Promise<void> {
    const page = await this.#client.resync(this.#now.space, Math.min(this.#keep, 200));
    this.#patch({ messages: merged([], page, this.#keep), continuityLost: null });
  }

  /** Stops following the space; the snapshot stays as it was. */
  close(): void {
    this.#closed = true;
    for (const stop of this.#stop.splice(0)) {
      stop();
    }
  }
}

/** Who of a space is online, away or offline, as last heard (users never heard are absent). */
export class PresenceStore extends Observable<Readonly<Record<string, PresenceStatus>>> {
  readonly #stop: () => void;

  constructor(client: Client, space: string) {
    super({});
    this.#stop = client.on("presence", (event) => {
      if (event.space === space && this.getSnapshot()[event.user] !== event.status) {
        this.update({ ...this.getSnapshot(), [event.user]: event.status });
      }
    });
  }

  close(): void {
    this.#stop();
  }
}

/** How long a "typing" lasts without news: a lost "stopped" must not leave it shown for ever. */
export const TYPING_EXPIRES_MS = 6_000;

/** Who is typing in a space now, in the order they started. */
export class TypingStore extends Observable<readonly string[]> {
  readonly #stop: () => void;
  readonly #expiry = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(client: Client, space: string) {
    super([]);
    this.#stop = client.on("typing", ({ space: where, user, typing }) => {
      if (where === space && user !== null) {
        this.#set(user, typing);
      }
    });
  }

  #set(user: string, typing: boolean): void {
    clearTimeout(this.#expiry.get(user));
    this.#expiry.delete(user);
    const others = this.getSnapshot().filter((u) => u !== user);
    if (typing) {
      this.#expiry.set(
        user,
        setTimeout(() => this.#set(user, false), TYPING_EXPIRES_MS),
      );
      if (!this.getSnapshot().includes(user)) {
        this.update([...others, user]);
      }
    } else if (others.length !== this.getSnapshot().length) {
      this.update(others);
    }
  }

  close(): void {
    this.#stop();
    for (const timer of this.#expiry.values()) {
      clearTimeout(timer);
    }
    this.#expiry.clear();
  }
}

/** The client's overall connection state (`client.state`), as an external store. */
export function connectionStore(client: Client): ExternalStore<ConnectionState> {
  return {
    subscribe: (onChange) => client.on("connection", onChange),
    getSnapshot: () => client.state,
  };
}
