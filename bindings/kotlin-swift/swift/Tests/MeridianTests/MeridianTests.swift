// The Swift bindings against a real devserver on loopback: each test starts its own
// devserver (ephemeral ports, its own data dir) and talks to it only through `Meridian`.

import Foundation
import Meridian
import XCTest

final class MeridianTests: XCTestCase {
    static let allTests = [
        ("testDmAcrossHomeRegions", asyncTest(testDmAcrossHomeRegions)),
        ("testPolicyRefusalIsATypedError", asyncTest(testPolicyRefusalIsATypedError)),
        ("testReconnectAfterRegionRestart", asyncTest(testReconnectAfterRegionRestart)),
        ("testLogsCarryTraceIdsAndNoSecrets", asyncTest(testLogsCarryTraceIdsAndNoSecrets)),
    ]

    /// The SDK's log records reach the app's handler, the send's trace id from submission
    /// to receipt, and never a token or a message body.
    func testLogsCarryTraceIdsAndNoSecrets() async throws {
        let server = try Devserver("logs")
        defer { server.kill() }
        let records = LogCollector()
        defer { try? setLogHandler(level: "off", handler: nil) }
        let options = ClientOptions(
            directoryUrl: server.directoryURL, token: "sam-token",
            federationKeys: server.federationKeys)
        let sam = try await within(callTimeout, "connect(sam) with logs") {
            try await connect(
                options: options, store: nil, tokenSource: nil, logLevel: "debug",
                logHandler: records)
        }
        let body = "a body that must never be logged 5e2b"
        _ = try await within(callTimeout, "joinSpace") {
            try await sam.joinSpace(space: "acme:general")
        }
        let send = try await within(callTimeout, "sendMessage") {
            try await sam.sendMessage(space: "acme:general", text: body)
        }
        let receipt = try await within(callTimeout, "acked()") { try await send.acked() }
        let all = records.all()
        let stored = all.filter { $0.message == "send stored" }
        XCTAssertEqual(stored.count, 1, "\(all)")
        let trace = stored.first?.fields.first { $0.name == "trace" }?.value ?? ""
        say("logs", "\(all.count) records; the send's trace id \(trace)")
        XCTAssertEqual(trace.count, 32, trace)
        XCTAssertEqual(stored.first?.fields.first { $0.name == "seq" }?.value, String(receipt.seq))
        XCTAssertTrue(
            all.contains { $0.message == "send submitted" && $0.fields.contains { $0.value == trace } })
        for record in all {
            let line = "\(record)"
            XCTAssertFalse(line.contains(body), line)
            XCTAssertFalse(line.contains("sam-token"), line)
        }
        _ = try? await sam.disconnect()
    }

    private func say(_ scenario: String, _ line: String) {
        print("  [\(scenario)] \(line)")
    }

    /// ana (eu-west) opens a DM with sam (us-east); both join; ana sends three messages
    /// that sam hears once each, in order, as the receipts say; sam answers and ana hears it.
    func testDmAcrossHomeRegions() async throws {
        let server = try Devserver("dm")
        defer { server.kill() }
        let ana = try await connectUser("ana", to: server)
        let sam = try await connectUser("sam", to: server)
        let (anaUser, samUser) = (ana.session(), sam.session())
        say("dm", "ana home \(anaUser.homeRegion), sam home \(samUser.homeRegion)")
        XCTAssertNotEqual(anaUser.homeRegion, samUser.homeRegion)
        let anaEvents = EventLog(ana)
        let samEvents = EventLog(sam)

        let dm = try await within(callTimeout, "ana.createDm(sam)") {
            try await ana.createDm(peer: "sam")
        }
        say("dm", "createDm -> \(dm.space) in \(dm.region), \(dm.kind), \(dm.residency)")
        XCTAssertEqual(dm.kind, .dm)
        XCTAssertEqual(dm.region, "eu-west")
        let anaJoined = try await within(callTimeout, "ana.joinSpace(dm)") {
            try await ana.joinSpace(space: dm.space)
        }
        let samJoined = try await within(callTimeout, "sam.joinSpace(dm)") {
            try await sam.joinSpace(space: dm.space)
        }
        say("dm", "joined: ana head \(anaJoined.headSeq), sam head \(samJoined.headSeq)")

        let bodies = ["hello sam (1)", "hello sam (2)", "hello sam (3)"]
        let started = Date()
        var sends: [PendingSend] = []
        for body in bodies {
            sends.append(
                try await within(callTimeout, "ana.sendMessage") {
                    try await ana.sendMessage(space: dm.space, text: body)
                })
        }
        var receipts: [SendReceipt] = []
        for send in sends {
            receipts.append(try await within(callTimeout, "acked()") { try await send.acked() })
        }
        say("dm", "ana sent 3, receipts seq \(receipts.map(\.seq)) in \(elapsed(since: started))")
        XCTAssertEqual(receipts.map(\.seq), (0..<3).map { receipts[0].seq + UInt64($0) })

        try await waitUntil(15, "sam to hear ana's 3 messages") {
            samEvents.messages(in: dm.space).count >= 3
        }
        say("dm", "sam heard 3 in \(elapsed(since: started))")
        try await Task.sleep(nanoseconds: 1_000_000_000)  // a duplicate would be here by now
        let heard = samEvents.messages(in: dm.space)
        say("dm", "sam heard seq \(heard.map(\.seq)): \(heard.map(\.body))")
        XCTAssertEqual(heard.map(\.body), bodies)
        XCTAssertEqual(heard.map(\.seq), receipts.map(\.seq))
        XCTAssertEqual(heard.map(\.id), receipts.map(\.messageId))
        XCTAssertEqual(heard.map(\.sender), Array(repeating: anaUser.user, count: heard.count))

        let reply = try await within(callTimeout, "sam.sendMessage") {
            try await sam.sendMessage(space: dm.space, text: "hi ana")
        }
        let replyReceipt = try await within(callTimeout, "reply acked()") { try await reply.acked() }
        try await waitUntil(15, "ana to hear sam's reply") {
            anaEvents.messages(in: dm.space).contains { $0.sender == samUser.user }
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        let fromSam = anaEvents.messages(in: dm.space).filter { $0.sender == samUser.user }
        say("dm", "ana heard from sam: \(fromSam.map { "\($0.seq) \($0.body)" })")
        XCTAssertEqual(fromSam.map(\.body), ["hi ana"])
        XCTAssertEqual(fromSam.map(\.seq), [replyReceipt.seq])
        XCTAssertEqual(replyReceipt.seq, receipts[2].seq + 1)

        try await within(callTimeout, "disconnect") {
            try await ana.disconnect()
            try await sam.disconnect()
        }
        try await waitUntil(5, "events() to finish after disconnect()") {
            anaEvents.finished && samEvents.finished
        }
        say("dm", "both disconnected; their events() streams finished")
    }

    /// The policy stops ana's send to a us-east space on the device, as a typed error; bad
    /// input is a typed error too.
    func testPolicyRefusalIsATypedError() async throws {
        let server = try Devserver("policy")
        defer { server.kill() }
        let ana = try await connectUser("ana", to: server)
        say("policy", "ana's policy: \(ana.session().policy)")

        do {
            _ = try await within(callTimeout, "ana.sendMessage(globex:launch)") {
                try await ana.sendMessage(space: "globex:launch", text: "must not leave the device")
            }
            XCTFail("sendMessage to globex:launch succeeded")
        } catch let error as MeridianError {
            say("policy", "sendMessage(globex:launch) threw .\(error.code): \(error)")
            guard case .PolicyViolation(let region, _) = error else {
                return XCTFail("expected .PolicyViolation, got \(error)")
            }
            XCTAssertEqual(region, "us-east")
            XCTAssertEqual(error.code, "policy_violation")
        }

        let pending = try await within(callTimeout, "pendingSends()") { try await ana.pendingSends() }
        say("policy", "pendingSends() -> \(pending.count) entries")
        XCTAssertTrue(pending.isEmpty, "pendingSends() after the refusal: \(pending)")

        do {
            _ = try await within(callTimeout, "joinSpace(\"\")") { try await ana.joinSpace(space: "") }
            XCTFail("joinSpace(\"\") succeeded")
        } catch let error as MeridianError {
            say("policy", "joinSpace(\"\") threw .\(error.code): \(error.message)")
            guard case .InvalidInput = error else {
                return XCTFail("expected .InvalidInput, got \(error)")
            }
        }

        try await within(callTimeout, "disconnect") { try await ana.disconnect() }
    }

    /// ana and ben in acme:general; the devserver dies (SIGKILL) and comes back on the same
    /// ports with the same data; ben's message after the restart reaches ana.
    func testReconnectAfterRegionRestart() async throws {
        let server = try Devserver("restart")
        defer { server.kill() }
        let space = "acme:general"
        let ana = try await connectUser("ana", to: server)
        let ben = try await connectUser("ben", to: server)
        let benUser = ben.session().user
        let anaEvents = EventLog(ana)
        _ = try await within(callTimeout, "ana.joinSpace") { try await ana.joinSpace(space: space) }
        _ = try await within(callTimeout, "ben.joinSpace") { try await ben.joinSpace(space: space) }

        let before = try await within(callTimeout, "ben.sendMessage before") {
            try await ben.sendMessage(space: space, text: "before the restart").acked()
        }
        try await waitUntil(15, "ana to hear ben before the restart") {
            anaEvents.messages(in: space).contains { $0.id == before.messageId }
        }
        say("restart", "before: ana heard ben's seq \(before.seq)")

        let killed = Date()
        let heardBeforeKill = anaEvents.events.count
        server.kill()
        try await waitUntil(15, "ana to notice the devserver died") {
            anaEvents.events.dropFirst(heardBeforeKill).contains {
                if case .connectionChanged(let state) = $0 { return state != .connected }
                return false
            }
        }
        say("restart", "devserver killed (SIGKILL); ana noticed in \(elapsed(since: killed))")
        try server.restart()
        say("restart", "devserver restarted on the same ports and data dir")

        let sent = Date()
        let pending = try await within(30, "ben.sendMessage after the restart") {
            try await ben.sendMessage(space: space, text: "after the restart")
        }
        let after = try await within(30, "acked() after the restart") { try await pending.acked() }
        say("restart", "ben's send after the restart acked as seq \(after.seq) in \(elapsed(since: sent))")
        try await waitUntil(30, "ana to hear ben after the restart") {
            anaEvents.messages(in: space).contains { $0.id == after.messageId }
        }
        say("restart", "ana heard it \(elapsed(since: sent)) after the send")
        try await Task.sleep(nanoseconds: 500_000_000)

        let fromBen = anaEvents.messages(in: space).filter { $0.sender == benUser }
        say("restart", "ana heard from ben: \(fromBen.map { "\($0.seq) \($0.body)" })")
        XCTAssertEqual(fromBen.map(\.body), ["before the restart", "after the restart"])
        XCTAssertEqual(fromBen.map(\.seq), [before.seq, after.seq])
        XCTAssertEqual(after.seq, before.seq + 1)

        let state = try await within(callTimeout, "connectionState()") { try await ana.connectionState() }
        say("restart", "ana.connectionState() -> \(state)")
        XCTAssertEqual(state, .connected)
        let states = anaEvents.events.compactMap { event -> String? in
            switch event {
            case .connectionChanged(let state): return "\(state)"
            case .continuityLost(let space, let from, let to): return "continuityLost(\(space) \(from)...\(String(describing: to)))"
            case .subscriptionLost(let space, let error): return "subscriptionLost(\(space) \(error.code))"
            default: return nil
            }
        }
        say("restart", "ana's connection events: \(states.joined(separator: " -> "))")

        anaEvents.stop()
        try await within(callTimeout, "disconnect") {
            try await ana.disconnect()
            try await ben.disconnect()
        }
    }
}

/// Keeps every log record the SDK hands over (on its threads).
final class LogCollector: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [LogEntry] = []

    func log(record: LogEntry) {
        lock.lock()
        records.append(record)
        lock.unlock()
    }

    func all() -> [LogEntry] {
        lock.lock()
        defer { lock.unlock() }
        return records
    }
}
