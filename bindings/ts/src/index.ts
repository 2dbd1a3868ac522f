// The public API, the same for the browser and Node entries.

export { Client, EventStream, PendingSend } from "./client.js";
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
export type { ErrorCode } from "./errors.js";
export type * from "./types.js";
