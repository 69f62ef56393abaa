import BSON
import Changes
import Foundation
import MongoClient
import PostgresClient
import Replication
import SQLiteStore
import TestSupport
import XCTest

/// Bad input that is not a file in `fixtures/bad/`: damaged local state (state db, spool segments), a resume
/// token the server refuses, and a source clock that goes backwards.
final class BadStateTests: IntegrationTestCase {
    /// The cases here, counted into the corpus's 40: corrupt state db, newer state db, three kinds of damaged
    /// segment (bit flip, truncation, wrong magic), garbage resume token, clock going backwards.
    static let scenarioCount = 7

    override var namePrefix: String { "badstate" }


    func ordersConfig(batch: String = "256KiB") throws -> String {
        try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                 defaults: "batch_bytes: \(batch)")
    }

    func mongoConfig(onHistoryLost: String) throws -> String {
        let path = try writeStreamsConfig("""
          - name: apps
            from: { collection: apps }
            to: { table: \(table).apps }
            on_history_lost: \(onHistoryLost)
        """, name: "apps.yaml")
        return path
    }

    func errorLines(_ stderr: String) -> [Substring] { stderr.split(separator: "\n").filter { $0.hasPrefix("mongoshift: error:") } }

    // MARK: - state database

    func testCorruptStateDatabaseIsReportedAndLeftAsIs() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try ordersConfig()
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7919) })
        try garbage.write(to: URL(fileURLWithPath: state + "/state.db"))
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 4, result.stderr)
        let errors = errorLines(result.stderr)
        XCTAssertEqual(errors.count, 1, result.stderr)
        XCTAssertTrue(errors.first?.contains("state.db") ?? false, "names the file: \(errors)")
        XCTAssertTrue(errors.first?.contains("corrupt") ?? false, "says what is wrong: \(errors)")
        XCTAssertEqual(FileManager.default.contents(atPath: state + "/state.db"), garbage, "the damaged file is left for inspection")
    }

    func testStateDatabaseFromANewerVersionIsRefused() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try ordersConfig()
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        do {
            let db = try SQLiteDatabase(path: state + "/state.db")
            try db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        }
        let before = FileManager.default.contents(atPath: state + "/state.db")
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 4, result.stderr)
        XCTAssertEqual(errorLines(result.stderr).count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("newer than this mongoshift"), result.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: state + "/state.db"), before, "state untouched")
    }

    // MARK: - spool

    func testCorruptSpoolSegmentsAreDiscardedAndReExtracted() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 3_000)
        let config = try ordersConfig(batch: "16KiB")
        let staged = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(staged.status, 0, staged.stderr)
        let dir = state + "/spool/orders"
        let segments = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".seg") }.sorted()
        XCTAssertGreaterThan(segments.count, 6)
        // One bit flipped in the payload, one truncated, one with a wrong magic.
        var a = [UInt8](FileManager.default.contents(atPath: dir + "/" + segments[1])!)
        a[a.count / 2] ^= 0x10
        try Data(a).write(to: URL(fileURLWithPath: dir + "/" + segments[1]))
        let b = FileManager.default.contents(atPath: dir + "/" + segments[3])!
        try b.prefix(b.count / 3).write(to: URL(fileURLWithPath: dir + "/" + segments[3]))
        var c = [UInt8](FileManager.default.contents(atPath: dir + "/" + segments[5])!)
        c[0] = UInt8(ascii: "X")
        try Data(c).write(to: URL(fileURLWithPath: dir + "/" + segments[5]))

        let applied = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(applied.status, 0, applied.stderr.suffix(2000).description)
        XCTAssertEqual(applied.stderr.components(separatedBy: "corrupt spool segment").count - 1, 3,
                       "each damaged segment is named once:\n\(applied.stderr.suffix(3000))")
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertTrue(tally.isExact && reasons.isEmpty, "re-extracted exactly: \(reasons)")
        XCTAssertEqual(tally.checked, 3_000)
    }

    // MARK: - resume token

    func testGarbageResumeTokenFollowsOnHistoryLost() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "apps",
                                      (1...300).map { .insert(["_id": .int32(Int32($0)), "name": .string("app \($0)")]) })
        let config = try mongoConfig(onHistoryLost: "resnapshot")
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        do {
            let db = try SQLiteDatabase(path: state + "/state.db")
            let garbage: Document = ["t": .document(["_data": .string("00DEADBEEF-not-a-resume-token")])]
            try db.query("UPDATE streams SET extract_position = ?, applied_position = ? WHERE name = 'apps'",
                         [.blob(garbage.bytes), .blob(garbage.bytes)])
        }
        _ = try await mongo.bulkWrite(database: database, collection: "apps",
                                      [.update(filter: ["_id": .int32(7)], update: ["$set": .document(["name": "changed"])], upsert: false)])
        let (process, base) = try MongoshiftProcess.start(["run", "--config", config])
        running.append(process)
        let diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "apps",
                                                    pg: connection, table: "\(table).apps")
        XCTAssertEqual(diffs, [], "converged after the re-snapshot")
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("re-snapshot") || log.contains("resnapshot"), "the log says why:\n\(log.suffix(3000))")
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling(timeout: 20)
        XCTAssertEqual(process.terminationStatus, 0)
    }

    // MARK: - source clock

    func testSourceClockGoingBackwardsIsReported() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let config = try ordersConfig()
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        // As if the source clock had run an hour ahead while rows were read, then was set right: the stored
        // watermark is now in the source's future.
        do {
            let db = try SQLiteDatabase(path: state + "/state.db")
            let ahead = try await connection.query("SELECT ((now() + interval '1 hour') AT TIME ZONE 'UTC')::timestamp(6)::text").rows[0][0]!
            let position = StreamPosition.watermark(WatermarkPosition(value: ahead, key: ["100"])).document
            try db.query("UPDATE streams SET extract_position = ?, applied_position = ? WHERE name = 'orders'",
                         [.blob(position.bytes), .blob(position.bytes)])
        }
        let (process, base) = try MongoshiftProcess.start(["run", "--config", config])
        running.append(process)
        try await waitFor("the clock report") { MongoshiftProcess.output(base).stderr.contains("source clock went backwards") }
        let lag = try MongoshiftProcess.run(["lag", "--json", "--config", config])
        XCTAssertTrue(lag.stdout.contains("source clock is behind"), "lag shows the reason: \(lag.stdout)")
        XCTAssertTrue(process.isRunning, "the stream goes on")
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling(timeout: 20)
        XCTAssertEqual(process.terminationStatus, 0)
    }
}
