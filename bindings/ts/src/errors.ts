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

/** Every error the SDK throws. Switch on `code`, or use `instanceof` on the subclasses. */
export class MeridianError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }

  /** Whether trying the same thing again later may succeed. */
  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }
}

/** The user's geographic policy forbids the region; nothing left the device. */
export class PolicyViolationError extends MeridianError {
  /** The region the policy forbids. */
  readonly region: string;

  constructor(message: string, region: string) {
    super("policy_violation", message);
    this.region = region;
  }
}

export class NotFoundError extends MeridianError {
  constructor(message: string) {
    super("not_found", message);
  }
}
export class UnauthorizedError extends MeridianError {
  constructor(message: string) {
    super("unauthorized", message);
  }
}
export class InvalidInputError extends MeridianError {
  constructor(message: string) {
    super("invalid_input", message);
  }
}
export class DirectoryUnavailableError extends MeridianError {
  constructor(message: string) {
    super("directory_unavailable", message);
  }
}
export class ClosedError extends MeridianError {
  constructor(message: string) {
    super("closed", message);
  }
}
export class TimeoutError extends MeridianError {
  constructor(message: string) {
    super("timeout", message);
  }
}
export class ProtocolError extends MeridianError {
  constructor(message: string) {
    super("protocol", message);
  }
}
export class MovedError extends MeridianError {
  constructor(message: string) {
    super("moved", message);
  }
}
export class TransportError extends MeridianError {
  constructor(message: string) {
    super("transport", message);
  }
}
export class IntegrityError extends MeridianError {
  constructor(message: string) {
    super("integrity", message);
  }
}
export class InternalError extends MeridianError {
  constructor(message: string) {
    super("internal", message);
  }
}

const BY_CODE: { readonly [C in Exclude<ErrorCode, "policy_violation">]: new (m: string) => MeridianError } = {
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
    return new InternalError(message);
  }
  return new InternalError(String(thrown));
}
