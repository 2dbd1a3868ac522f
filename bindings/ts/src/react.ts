// `@meridian/sdk/react`: React hooks over the client's external stores (stores.ts). A
// subpath of its own, so that apps that don't import it pay nothing for it; React is a
// peer dependency. Hooks read through `useSyncExternalStore`, so a render never sees a
// torn state, and each space's store is shared by every component that shows it.

import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import type { Client, PendingSend } from "./client.js";
import {
  PresenceStore,
  SpaceStore,
  TypingStore,
  connectionStore,
  type SpaceSnapshot,
  type SpaceStoreOptions,
} from "./stores.js";
import type { ConnectionState, PresenceStatus } from "./types.js";

/** How long a store nobody shows any more is kept, in case a component shows it again. */
const IDLE_CLOSE_MS = 5_000;

interface Closable {
  close(): void;
}

/**
 * The stores of one client, shared by key and counted by the components that use them:
 * made on first render, closed a while after the last one unmounted (or after a render
 * that never mounted, as React may abandon one).
 */
class StoreCache {
  readonly client: Client;
  readonly #entries = new Map<string, { store: Closable; users: number; idle?: ReturnType<typeof setTimeout> }>();

  constructor(client: Client) {
    this.client = client;
  }

  get<S extends Closable>(key: string, make: (client: Client) => S): S {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { store: make(this.client), users: 0 };
      this.#entries.set(key, entry);
      this.#closeWhenIdle(key);
    }
    return entry.store as S;
  }

  /** A component shows the store of `key`; the function returned says it stopped. */
  retain(key: string): () => void {
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      return () => undefined;
    }
    entry.users += 1;
    clearTimeout(entry.idle);
    return () => {
      entry.users -= 1;
      this.#closeWhenIdle(key);
    };
  }

  #closeWhenIdle(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.users > 0) {
      return;
    }
    clearTimeout(entry.idle);
    entry.idle = setTimeout(() => {
      if (entry.users === 0 && this.#entries.get(key) === entry) {
        this.#entries.delete(key);
        entry.store.close();
      }
    }, IDLE_CLOSE_MS);
  }
}

const MeridianContext = createContext<StoreCache | null>(null);

/** Props of {@link MeridianProvider}. */
export interface MeridianProviderProps {
  /** A connected client (`await Client.connect(...)`). */
  readonly client: Client;
  readonly children?: ReactNode;
}

/** Makes `client` the one the hooks below it use. */
export function MeridianProvider({ client, children }: MeridianProviderProps): ReactNode {
  const cache = useMemo(() => new StoreCache(client), [client]);
  return createElement(MeridianContext.Provider, { value: cache }, children);
}

function useCache(): StoreCache {
  const cache = useContext(MeridianContext);
  if (cache === null) {
    throw new Error("Meridian hooks must be used inside a <MeridianProvider client={client}>");
  }
  return cache;
}

/** The client of the nearest {@link MeridianProvider}. */
export function useMeridian(): Client {
  return useCache().client;
}

function useShared<S extends Closable>(key: string, make: (client: Client) => S): S {
  const cache = useCache();
  const store = cache.get(key, make);
  useEffect(() => cache.retain(key), [cache, key, store]);
  return store;
}

/** A space's screen: its snapshot, and what the user can do there. */
export interface SpaceView extends SpaceSnapshot {
  /** Sends a message (shown in `pending` at once). */
  send(text: string): Promise<PendingSend>;
  /** Puts a failed send back in line. */
  retry(key: string): Promise<void>;
  /** Removes a send that is not on its way yet. */
  cancel(key: string): Promise<void>;
  /** After `continuityLost`: reloads the newest page. */
  resync(): Promise<void>;
}

/**
 * Joins `space` and follows it: messages in order, each once; pending sends with their
 * state; the continuity-lost mark. Components showing the same space share one store
 * (made with the options of the first).
 */
export function useSpace(space: string, options?: SpaceStoreOptions): SpaceView {
  const store = useShared(`space:${space}`, (client) => new SpaceStore(client, space, options));
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(
    () => ({
      ...snapshot,
      send: (text: string) => store.send(text),
      retry: (key: string) => store.retry(key),
      cancel: (key: string) => store.cancel(key),
      resync: () => store.resync(),
    }),
    [snapshot, store],
  );
}

/** The presence of the members of `space`, as last heard. */
export function usePresence(space: string): Readonly<Record<string, PresenceStatus>> {
  const store = useShared(`presence:${space}`, (client) => new PresenceStore(client, space));
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** Who is typing in `space` now, and how to say the user is (or stopped). */
export function useTyping(space: string): {
  readonly typing: readonly string[];
  setTyping(typing: boolean): Promise<void>;
} {
  const store = useShared(`typing:${space}`, (client) => new TypingStore(client, space));
  const client = useMeridian();
  const typing = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(
    () => ({ typing, setTyping: (now: boolean) => client.typing(space, now) }),
    [typing, client, space],
  );
}

/** The client's overall connection state, re-rendering on each change. */
export function useConnectionState(): ConnectionState {
  const client = useMeridian();
  const store = useMemo(() => connectionStore(client), [client]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}
