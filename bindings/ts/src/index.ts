// The public API, the same for the browser and Node entries.

export { Client, EventStream, PendingSend, init } from "./client.js";
export type { InitOptions, WasmSource } from "./client.js";
export {
  ClosedError,
  DirectoryUnavailableError,
  IntegrityError,
  InternalError,
  InvalidInputError,
  MeridianError,
  MovedError,
  NotFoundError,
  PolicyViolationError,
  ProtocolError,
  TimeoutError,
  TransportError,
  UnauthorizedError,
} from "./errors.js";
export type { ErrorCode, MeridianErrorOptions } from "./errors.js";
export {
  PresenceStore,
  SpaceStore,
  TypingStore,
  TYPING_EXPIRES_MS,
  connectionStore,
} from "./stores.js";
export type { ExternalStore, PendingItem, SpaceSnapshot, SpaceStoreOptions } from "./stores.js";
export type * from "./types.js";
