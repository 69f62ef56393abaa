import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Issue "Nothing lost, nothing stuck" item 1: a corrupt tail segment used to lose the rest of the spool — the
/// tailer kept running after the segment was discarded, wrote its next segment past the discarded range and, on an
/// idle stream, marked its newer resume token applied. Here the target is blocked while the tailer spools several
/// segments, one pending segment is damaged, and the target is released: the discard rewinds the extractor before
/// anything else is recorded, and the target ends exactly equal to the source — with the source busy during the
/// recovery and idle.
final class SpoolRecoveryTests: IntegrationTestCase {
    override var namePrefix: String { "recover" }

    var spoolDirectory: String { state + "/spool/" + streamName }
    var streamName = ""

    func segments() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: spoolDirectory)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    }

    /// Flips a byte in the middle of the second pending segment (the first one is in the blocked applier's hands).
    func damageSecondPendingSegment() throws {
        let name = segments()[1]
        var bytes = [UInt8](FileManager.default.contents(atPath: spoolDirectory + "/" + name)!)
        bytes[bytes.count / 2] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: spoolDirectory + "/" + name))
    }

    // MARK: Mongo → Redshift

    /// `run` of a Mongo → table stream whose target is locked while four segments wait: `whileBlocked` runs then,
    /// `afterRelease` once the lock is gone (with `busy`, while the source keeps changing). Returns the run's log.
    func mongoToTable(busy: Bool, whileBlocked: () throws -> Void, afterRelease: () async throws -> Void = {}) async throws -> String {
        streamName = "apps"
        let config = try writeStreamsConfig("""
          - name: apps
            from: { collection: apps }
            to: { table: public.\(table) }
        """, name: "apps.yaml")
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...100).map { .insert(["_id": .int32(Int32($0)), "round": 0]) })
        let (process, base) = try startRun(config)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        // The target blocked: the applier waits on its first batch while the tailer spools the next ones.
        let blocker = try await PostgresConnection.connect(pg)
        try await blocker.execute("BEGIN; LOCK TABLE public.\(table) IN ACCESS EXCLUSIVE MODE")
        var round: Int32 = 0
        func write() async throws {
            round += 1
            _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...100).map {
                .update(filter: ["_id": .int32(Int32($0))], update: ["$set": .document(["round": .int32(round)])], upsert: false)
            } + [.insert(["_id": .int32(1000 + round), "round": .int32(round)])])
        }
        while segments().count < 4 {
            try await write()
            try await Task.sleep(for: .milliseconds(400))
        }
        try whileBlocked()
        try await blocker.execute("COMMIT")
        if busy {
            for _ in 0..<10 {
                try await write()
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        try await afterRelease()
        let diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "apps",
                                                    pg: connection, table: "public.\(table)")
        XCTAssertEqual(diffs, [], "the table equals the collection")
        stop(process)
        return MongoshiftProcess.output(base).stderr
    }

    func corruptTailSegmentMongoToRedshift(busy: Bool) async throws {
        let log = try await mongoToTable(busy: busy, whileBlocked: damageSecondPendingSegment)
        XCTAssertTrue(log.contains("corrupt spool segment"), "the discarded range was re-read")
    }

    /// A pending segment that cannot be read for a while (here: a directory in its place, as a read fails with
    /// EISDIR; in production too many open files, an I/O error) is no corrupt segment: it used to be discarded and
    /// the stream rewound — on a change stream to a resume token the oplog may no longer hold. The applier waits
    /// and reads it once it can.
    func testAnUnreadableSegmentIsWaitedForNotDiscarded() async throws {
        var name = ""
        let log = try await mongoToTable(busy: false, whileBlocked: {
            // The third pending segment: the first is in the blocked applier's hands, the second may be read already.
            name = spoolDirectory + "/" + segments()[2]
            try FileManager.default.moveItem(atPath: name, toPath: name + ".aside")
            try FileManager.default.createDirectory(atPath: name, withIntermediateDirectories: false)
        }, afterRelease: {
            try await Task.sleep(for: .seconds(3))
            try FileManager.default.removeItem(atPath: name)
            try FileManager.default.moveItem(atPath: name + ".aside", toPath: name)
        })
        XCTAssertFalse(log.contains("corrupt spool segment"), "not discarded:\n\(log.suffix(3000))")
        XCTAssertTrue(log.contains("Is a directory"), "the read failure was reported and retried:\n\(log.suffix(3000))")
    }

    func testCorruptTailSegmentMongoToRedshiftWhileBusy() async throws { try await corruptTailSegmentMongoToRedshift(busy: true) }
    func testCorruptTailSegmentMongoToRedshiftWhileIdle() async throws { try await corruptTailSegmentMongoToRedshift(busy: false) }

    // MARK: Redshift → Mongo

    func tableToMongo(busy: Bool) async throws {
        streamName = "orders"
        try await Fixtures.createOrders(connection, table: table, rows: 200)
        // The target Mongo is a server of this test's own, so it can be frozen.
        let (targetURL, targetPID) = try await startPrivateMongo()
        let target = try MongoClient(url: targetURL)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: targetURL, database: database, table: table,
                                              extra: "    reconcile_every: 0s")
        let (process, base) = try startRun(config)
        try await waitFor("snapshot") { phase("orders") == "streaming" }
        kill(targetPID, SIGSTOP)
        var round = 0
        func write() async throws {
            round += 1
            try await connection.execute("UPDATE public.\(table) SET note = 'round \(round)', updated_at = now() WHERE id % 7 = \(round % 7)")
        }
        while segments().count < 4 {
            try await write()
            try await Task.sleep(for: .milliseconds(700))
        }
        try damageSecondPendingSegment()
        kill(targetPID, SIGCONT)
        if busy {
            for _ in 0..<10 {
                try await write()
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        let diffs = try await Convergence.wait(timeout: 90, pg: connection, table: table, mongo: target, database: database)
        XCTAssertEqual(diffs, [], "Mongo equals the source after the discarded range was re-read")
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("corrupt spool segment"))
        stop(process)
    }

    func testCorruptTailSegmentRedshiftToMongoWhileBusy() async throws { try await tableToMongo(busy: true) }
    func testCorruptTailSegmentRedshiftToMongoWhileIdle() async throws { try await tableToMongo(busy: false) }
}
