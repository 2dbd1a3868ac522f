// Meridian for Swift: the generated bindings (MeridianFFI) plus what makes them read like
// Swift. `import Meridian` is enough: it re-exports every generated type and function
// (`connect(options:)`, `ClientBuilder`, `MeridianClient` and its async methods, `Event`,
// `MeridianError`, ...). This file may also be compiled into the same module as the
// generated MeridianFFI.swift (an app target that adds both files).

#if canImport(MeridianFFI)
    @_exported import MeridianFFI
#endif

// MARK: - Events as an AsyncStream

extension MeridianClient {
    /// Every event of this client from now on, in order, as an `AsyncStream`:
    ///
    ///     for await event in client.events() {
    ///         if case .messageReceived(let message) = event { show(message) }
    ///     }
    ///
    /// Nothing is dropped: the stream buffers without bound while the loop is busy. Each
    /// call is its own subscription; it ends when the task iterating the stream is
    /// cancelled or the stream is dropped. If the SDK could not subscribe at all (its
    /// runtime failed to start, which `connect` would have reported first), the stream
    /// finishes at once.
    public func events() -> AsyncStream<Event> {
        AsyncStream(Event.self, bufferingPolicy: .unbounded) { continuation in
            do {
                let subscription = try subscribe(listener: StreamListener(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish()
            }
        }
    }
}

/// Hands each event the SDK delivers (on one of its threads, one at a time) to the stream.
private final class StreamListener: EventListener {
    private let continuation: AsyncStream<Event>.Continuation

    init(_ continuation: AsyncStream<Event>.Continuation) {
        self.continuation = continuation
    }

    // The SDK lets go of the listener when the subscription ends: cancelled, or the client
    // disconnected and has no more events. Either way the stream is over.
    deinit {
        continuation.finish()
    }

    func onEvent(event: Event) {
        continuation.yield(event)
    }
}

// MARK: - Errors

extension MeridianError {
    /// The stable code, the same in every Meridian SDK: `policy_violation`, `not_found`,
    /// `unauthorized`, `invalid_input`, `directory_unavailable`, `closed`, `timeout`,
    /// `protocol`, `moved`, `transport`, `integrity`, `internal`.
    public var code: String {
        switch self {
        case .PolicyViolation: return "policy_violation"
        case .NotFound: return "not_found"
        case .Unauthorized: return "unauthorized"
        case .InvalidInput: return "invalid_input"
        case .DirectoryUnavailable: return "directory_unavailable"
        case .Closed: return "closed"
        case .Timeout: return "timeout"
        case .Protocol: return "protocol"
        case .Moved: return "moved"
        case .Transport: return "transport"
        case .Integrity: return "integrity"
        case .Internal: return "internal"
        }
    }

    /// What went wrong, for a developer (not for display to users).
    public var message: String {
        switch self {
        case .PolicyViolation(_, let message), .NotFound(let message),
            .Unauthorized(let message), .InvalidInput(let message),
            .DirectoryUnavailable(let message), .Closed(let message), .Timeout(let message),
            .Protocol(let message), .Moved(let message), .Transport(let message),
            .Integrity(let message), .Internal(let message):
            return message
        }
    }
}

// MARK: - Connecting

extension ClientOptions {
    /// Options with the SDK keeping pending sends, cursors and the device key in memory
    /// (pass `storeDir`, or a store to `connect`, to keep them across launches).
    public init(directoryUrl: String, token: String, federationKeys: [FederationKey]) {
        self.init(
            directoryUrl: directoryUrl, token: token, federationKeys: federationKeys,
            storeDir: nil)
    }
}

/// Connects with the app's own store and token source where given (else the SDK's own store,
/// `options.storeDir` or memory, and the token in `options`): `ClientBuilder` in one call.
/// `logHandler` gets the SDK's log records at `logLevel` and above (`error`, `warn`, `info`,
/// `debug`, `trace`), for the whole process; a record never holds a token, a key or a body.
public func connect(
    options: ClientOptions, store: AppStore?, tokenSource: TokenSource?,
    logLevel: String = "info", logHandler: LogHandler? = nil
) async throws -> MeridianClient {
    var builder = ClientBuilder(options: options)
    if let store { builder = builder.store(store: store) }
    if let tokenSource { builder = builder.tokenSource(source: tokenSource) }
    if let logHandler { builder = builder.logHandler(level: logLevel, handler: logHandler) }
    return try await builder.connect()
}
