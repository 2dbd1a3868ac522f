// What the scenarios need around the SDK: a devserver they start, kill and restart, the
// events a client heard, and timeouts (the SDK's async calls do not end when the task
// awaiting them is cancelled, so a timeout races the call instead of cancelling it).

import Foundation
import Meridian
import XCTest

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Timeouts

/// Resumes a continuation once, with whichever result comes first.
private final class FirstResult<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?

    init(_ continuation: CheckedContinuation<T, Error>) { self.continuation = continuation }

    func resume(with result: Result<T, Error>) {
        lock.lock()
        let continuation = self.continuation
        self.continuation = nil
        lock.unlock()
        continuation?.resume(with: result)
    }
}

/// `operation`'s result, or a `Failure` naming `what` once `seconds` have passed (the
/// operation then goes on unobserved).
func within<T: Sendable>(
    _ seconds: Double, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        let first = FirstResult(continuation)
        let timer = Task {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            first.resume(with: .failure(Failure("timed out after \(seconds) s: \(what)")))
        }
        Task {
            do {
                first.resume(with: .success(try await operation()))
            } catch {
                first.resume(with: .failure(error))
            }
            timer.cancel()
        }
    }
}

/// Waits until `condition` holds, checking every 50 ms; a `Failure` after `seconds`.
func waitUntil(_ seconds: Double, _ what: String, _ condition: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { throw Failure("timed out after \(seconds) s waiting for \(what)") }
        try await Task.sleep(nanoseconds: 50_000_000)
    }
}

func elapsed(since start: Date) -> String {
    String(format: "%.2f s", Date().timeIntervalSince(start))
}

// MARK: - Events

/// Everything one client heard, read from `client.events()` by a task of its own.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var heard: [Event] = []
    private var ended = false
    private var reader: Task<Void, Never>?

    init(_ client: MeridianClient) {
        let stream = client.events()
        reader = Task { [weak self] in
            for await event in stream {
                self?.append(event)
            }
            self?.end()
        }
    }

    private func end() {
        lock.lock()
        ended = true
        lock.unlock()
    }

    /// Whether the stream finished (after `disconnect()`, or `stop()`).
    var finished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return ended
    }

    deinit { reader?.cancel() }

    private func append(_ event: Event) {
        lock.lock()
        heard.append(event)
        lock.unlock()
    }

    var events: [Event] {
        lock.lock()
        defer { lock.unlock() }
        return heard
    }

    /// The messages heard in `space`, in the order they arrived.
    func messages(in space: String) -> [Message] {
        events.compactMap {
            if case .messageReceived(let message) = $0, message.space == space { return message }
            return nil
        }
    }

    /// Stops reading (the subscription ends with the stream).
    func stop() { reader?.cancel() }
}

// MARK: - Clients

let callTimeout = 20.0

/// Connects a demo user (token `<user>-token`) to `server`.
func connectUser(_ user: String, to server: Devserver) async throws -> MeridianClient {
    let options = ClientOptions(
        directoryUrl: server.directoryURL, token: "\(user)-token",
        federationKeys: server.federationKeys)
    return try await within(callTimeout, "connect(\(user))") {
        try await connect(options: options)
    }
}

// MARK: - The devserver

/// A devserver on loopback with ephemeral ports and a data dir of its own, started by the
/// test; `restart()` brings it back on the same ports with the same data.
final class Devserver: @unchecked Sendable {
    private(set) var directoryURL = ""
    private(set) var federationKeys: [FederationKey] = []
    private(set) var regions: [String: String] = [:]
    private var process: Process?
    private var ports: [String: Int] = [:]
    private let name: String
    private let binary: String
    private let dataDir: String
    private var logPath = ""
    private var launches = 0
    private let work: String
    private let pidFile: String?

    /// Starts one for `name` (its data dir and log are named after it).
    init(_ name: String) throws {
        let env = ProcessInfo.processInfo.environment
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../../..").standardized.path
        self.name = name
        binary = env["MERIDIAN_DEVSERVER"] ?? "\(repo)/target/debug/devserver"
        let base = env["MERIDIAN_WORK_DIR"] ?? NSTemporaryDirectory() + "meridian-swift-tests"
        work = "\(base)/\(name)"
        dataDir = "\(work)/data"
        pidFile = env["MERIDIAN_DEVSERVER_PIDS"]
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try launch(["--ephemeral-ports"])
    }

    deinit { kill() }

    /// SIGKILL: the regions and the directory vanish at once, as in a crash.
    func kill() {
        guard let process, process.isRunning else { return }
        #if canImport(Glibc)
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
        #else
            _ = Darwin.kill(process.processIdentifier, SIGKILL)
        #endif
        process.waitUntilExit()
    }

    /// Starts it again (killing it first if it runs) on the same ports, with the same data dir.
    func restart() throws {
        kill()
        var arguments: [String] = []
        for (name, port) in ports.sorted(by: { $0.key < $1.key }) {
            arguments += ["--port", "\(name)=\(port)"]
        }
        try launch(arguments)
    }

    /// The log's last lines (for a failure message).
    func logTail(_ lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    private func launch(_ arguments: [String]) throws {
        launches += 1
        logPath = "\(work)/devserver-\(launches).log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath) else {
            throw Failure("cannot write \(logPath)")
        }
        defer { try? log.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments + ["--ready-line", "--data-dir", dataDir]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        if let pidFile { append("\(process.processIdentifier)\n", to: pidFile) }
        try readReadyLine()
    }

    private func append(_ text: String, to path: String) {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        try? handle.close()
    }

    private func readReadyLine() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("READY ") }) {
                return try parseReady(String(line.dropFirst("READY ".count)))
            }
            guard process?.isRunning == true else {
                throw Failure("devserver \(name) exited before READY:\n\(logTail())")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill()
        throw Failure("devserver \(name) printed no READY line in 20 s:\n\(logTail())")
    }

    private func parseReady(_ json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let directory = object["directory_url"] as? String,
            let keys = object["federation_keys"] as? [[String: Any]],
            let regions = object["regions"] as? [String: String]
        else { throw Failure("unexpected READY line: \(json)") }
        directoryURL = directory
        federationKeys = keys.compactMap { key in
            guard let id = key["id"] as? String, let publicKey = key["public_key"] as? String
            else { return nil }
            return FederationKey(id: id, publicKey: publicKey)
        }
        self.regions = regions
        var ports: [String: Int] = [:]
        ports["directory"] = URL(string: directory)?.port
        for (region, url) in regions { ports[region] = URL(string: url)?.port }
        guard ports.count == regions.count + 1 else { throw Failure("no ports in READY: \(json)") }
        self.ports = ports
    }
}
