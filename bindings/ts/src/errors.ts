// Errors: one class per stable code, all subclasses of MeridianError.

/** The stable error codes, shared with the Rust core, Kotlin and Swift. Never renamed. */
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

const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "timeout",
  "transport",
  "directory_unavailable",
  "moved",
]);

/** What an error was caused by, as `new Error(message, { cause })` takes it. */
export interface MeridianErrorOptions {
  readonly cause?: unknown;
}

/**
 * Every error the SDK throws. Switch on `code`, or use `instanceof` on the subclasses.
 * Each class sets its `name` as a literal, so it survives a minifier renaming classes.
 */
export class MeridianError extends Error {
  override name = "MeridianError";
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: MeridianErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }

  /** Whether trying the same thing again later may succeed. */
  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }
}

/** The user's geographic policy forbids the region; nothing left the device. */
export class PolicyViolationError extends MeridianError {
  override name = "PolicyViolationError";
  /** The region the policy forbids. */
  readonly region: string;

  constructor(message: string, region: string, options?: MeridianErrorOptions) {
    super("policy_violation", message, options);
    this.region = region;
  }
}

export class NotFoundError extends MeridianError {
  override name = "NotFoundError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("not_found", message, options);
  }
}
export class UnauthorizedError extends MeridianError {
  override name = "UnauthorizedError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("unauthorized", message, options);
  }
}
export class InvalidInputError extends MeridianError {
  override name = "InvalidInputError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("invalid_input", message, options);
  }
}
export class DirectoryUnavailableError extends MeridianError {
  override name = "DirectoryUnavailableError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("directory_unavailable", message, options);
  }
}
export class ClosedError extends MeridianError {
  override name = "ClosedError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("closed", message, options);
  }
}
export class TimeoutError extends MeridianError {
  override name = "TimeoutError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("timeout", message, options);
  }
}
export class ProtocolError extends MeridianError {
  override name = "ProtocolError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("protocol", message, options);
  }
}
export class MovedError extends MeridianError {
  override name = "MovedError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("moved", message, options);
  }
}
export class TransportError extends MeridianError {
  override name = "TransportError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("transport", message, options);
  }
}
export class IntegrityError extends MeridianError {
  override name = "IntegrityError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("integrity", message, options);
  }
}
export class InternalError extends MeridianError {
  override name = "InternalError";
  constructor(message: string, options?: MeridianErrorOptions) {
    super("internal", message, options);
  }
}

const BY_CODE: { readonly [C in Exclude<ErrorCode, "policy_violation">]: new (m: string, o?: MeridianErrorOptions) => MeridianError } = {
  not_found: NotFoundError,
  unauthorized: UnauthorizedError,
  invalid_input: InvalidInputError,
  directory_unavailable: DirectoryUnavailableError,
  closed: ClosedError,
  timeout: TimeoutError,
  protocol: ProtocolError,
  moved: MovedError,
  transport: TransportError,
  integrity: IntegrityError,
  internal: InternalError,
};

function field(value: object, name: string): unknown {
  return (value as Record<string, unknown>)[name];
}

function isCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && (code === "policy_violation" || code in BY_CODE);
}

/** Turns whatever the wasm core threw into the matching MeridianError. */
export function toMeridianError(thrown: unknown): MeridianError {
  if (thrown instanceof MeridianError) {
    return thrown;
  }
  if (typeof thrown === "object" && thrown !== null) {
    const code = field(thrown, "code");
    const message = String(field(thrown, "message") ?? "unknown error");
    if (code === "policy_violation") {
      return new PolicyViolationError(message, String(field(thrown, "region") ?? "unknown"));
    }
    if (isCode(code)) {
      return new BY_CODE[code as Exclude<ErrorCode, "policy_violation">](message);
    }
    // Not the core's: a JavaScript error from the app's store or token provider, or the
    // platform's. It stays reachable as `cause`.
    return new InternalError(message, { cause: thrown });
  }
  return new InternalError(String(thrown), { cause: thrown });
}
