// Small helpers shared by the package's tests.

import {
  Client,
  type EventOf,
  type EventStream,
  type EventType,
  type MeridianEvent,
  type Store,
} from "@meridian/sdk";
import type { Devserver } from "./devserver.js";

/** A demo user's client (token `<user>-token`), with its events buffered from the start. */
export async function connect(
  fed: Devserver,
  user: string,
  options: { store?: Store } = {},
): Promise<{ client: Client; events: EventStream }> {
  const client = await Client.connect({
    directoryUrl: fed.directoryUrl,
    token: `${user}-token`,
    federationKeys: fed.federationKeys,
    store: options.store ?? "memory",
  });
  return { client, events: client.events() };
}

/**
 * A stream's `next()` still unanswered when a wait timed out: the next wait takes it over,
 * so that the event it resolves with is not lost to a call nobody awaits any more.
 */
const unanswered = new WeakMap<EventStream, Promise<IteratorResult<MeridianEvent>>>();

/** The stream's next event, reusing a `next()` an earlier wait left unanswered. */
function nextOf(events: EventStream): Promise<IteratorResult<MeridianEvent>> {
  let pending = unanswered.get(events);
  if (pending === undefined) {
    pending = events.next();
    unanswered.set(events, pending);
    const settled = (): void => {
      if (unanswered.get(events) === pending) {
        unanswered.delete(events);
      }
    };
    // Whoever awaits `pending` sees a rejection; this only forgets it either way.
    pending.then(settled, settled);
  }
  return pending;
}

/** The next `count` events of `type` from `events`, failing after `timeoutMs`. */
export async function take<T extends EventType>(
  events: EventStream,
  type: T,
  count: number,
  timeoutMs = 15_000,
): Promise<Array<EventOf<T>>> {
  const found: Array<EventOf<T>> = [];
  const deadline = Date.now() + timeoutMs;
  while (found.length < count) {
    const left = deadline - Date.now();
    const next = await Promise.race([
      nextOf(events),
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), Math.max(left, 0)).unref()),
    ]);
    if (next === "timeout") {
      throw new Error(`waited ${timeoutMs} ms for ${count} ${type} events, got ${found.length}`);
    }
    if (next.done) {
      throw new Error(`the event stream ended after ${found.length} ${type} events`);
    }
    if (next.value.type === type) {
      found.push(next.value as EventOf<T>);
    }
  }
  return found;
}

/** Reads `events` until one matches `predicate`, failing after `timeoutMs`. */
export async function until(
  events: EventStream,
  predicate: (event: MeridianEvent) => boolean,
  timeoutMs = 15_000,
): Promise<MeridianEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const next = await Promise.race([
      nextOf(events),
      new Promise<"timeout">((r) =>
        setTimeout(() => r("timeout"), Math.max(deadline - Date.now(), 0)).unref(),
      ),
    ]);
    if (next === "timeout" || next.done) {
      throw new Error(`no matching event within ${timeoutMs} ms`);
    }
    if (predicate(next.value)) {
      return next.value;
    }
  }
}

/** A store in a Map: what an app with its own persistence would pass. */
export class MapStore implements Store {
  readonly records = new Map<string, Uint8Array>();

  put(namespace: string, key: string, value: Uint8Array): Promise<void> {
    this.records.set(`${namespace}/${key}`, value.slice());
    return Promise.resolve();
  }

  delete(namespace: string, key: string): Promise<void> {
    this.records.delete(`${namespace}/${key}`);
    return Promise.resolve();
  }

  list(namespace: string): Promise<Array<[string, Uint8Array]>> {
    const prefix = `${namespace}/`;
    const found: Array<[string, Uint8Array]> = [];
    for (const [id, value] of this.records) {
      if (id.startsWith(prefix)) {
        found.push([id.slice(prefix.length), value]);
      }
    }
    return Promise.resolve(found);
  }
}
