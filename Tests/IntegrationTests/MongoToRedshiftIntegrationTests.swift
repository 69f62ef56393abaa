import StateStore
import BSON
import Foundation
import MongoClient
import PostgresClient
import Replication
import SQLiteStore
import TestSupport
import Spool
import XCTest

/// Mongo → Redshift end to end against the dev Mongo server and PostgreSQL (postgres dialect).
final class MongoToRedshiftIntegrationTests: IntegrationTestCase {
    override var namePrefix: String { "m2r" }
    var schema = ""

    override func setUp() async throws {
        try await super.setUp()
        schema = TestServers.uniqueName("analytics")
        onTeardown { [unowned self] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
    }

    var appsTable: String { "\(schema).apps" }

    func writeConfig(mongoURL: String? = nil, extraStreams: String = "", onDrop: String = "keep", batch: String = "1MiB") throws -> String {
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL ?? self.mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms, batch_bytes: \(batch) }
        streams:
          - name: apps
            from: { collection: apps }
            to: { table: \(appsTable) }
            partitions: 4
            on_history_lost: resnapshot
            on_drop: \(onDrop)
        \(extraStreams)
        """
        let path = directory + "/config.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func seed(_ client: MongoClient, count: Int) async throws -> [ObjectId] {
        var ids: [ObjectId] = []
        var ops: [WriteOperation] = []
        for i in 0..<count {
            let id = ObjectId.generate()
            ids.append(id)
            var doc: Document = [
                "_id": .objectId(id), "name": .string("app \(i)"),
                "qty": i % 2 == 0 ? .int32(Int32(i)) : .int64(Int64(i) * 1_000_000_000_000),
                "price": .decimal128(Decimal128("\(i).25")!), "created": .datetime(1_704_067_200_000 + Int64(i) * 1000),
                "meta": .document(["tags": .array(["a", .int32(Int32(i % 7))]), "deep": .document(["x": .double(Double(i) / 4)])]),
                "tags": .array([.string("t\(i % 3)")]), "blob": .binary(BSONBinary(subtype: 0, data: [UInt8(i % 256), 1, 2])),
                "active": .bool(i % 3 == 0),
            ]
            if i % 3 == 0 { doc.append("optional", .string("present")) }
            if i >= count / 2 { doc.append("late_field", .int32(Int32(i))) }
            ops.append(.insert(doc))
            if ops.count == 5000 {
                _ = try await client.bulkWrite(database: database, collection: "apps", ops)
                ops = []
            }
        }
        if !ops.isEmpty { _ = try await client.bulkWrite(database: database, collection: "apps", ops) }
        return ids
    }

    func assertConverged(_ client: MongoClient? = nil, excluding: Set<String> = [], file: StaticString = #filePath, line: UInt = #line) async throws {
        let diffs = try await TableConvergence.wait(timeout: 120, mongo: client ?? mongo, database: database, collection: "apps",
                                                    pg: connection, table: appsTable, excluding: excluding)
        XCTAssertEqual(diffs, [], "table must equal the collection", file: file, line: line)
    }

    // MARK: -

    func testSnapshotThenStreamMixedTypesUpdatesReplacesDeletesAndNewFields() async throws {
        let ids = try await seed(mongo, count: 20_000)
        let (process, _) = try startRun(try writeConfig())
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        let count = try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0]
        XCTAssertEqual(count, "20000")
        var ops: [WriteOperation] = []
        for id in ids[0..<1000] {
            ops.append(.update(filter: ["_id": .objectId(id)], update: ["$set": .document(["name": "updated", "qty": .double(2.5)])], upsert: false))
        }
        for id in ids[1000..<1200] {
            ops.append(.replace(filter: ["_id": .objectId(id)], replacement: ["_id": .objectId(id), "name": "replaced", "replaced_field": .int32(1)], upsert: false))
        }
        for id in ids[1200..<1500] { ops.append(.delete(filter: ["_id": .objectId(id)])) }
        for i in 0..<100 {
            ops.append(.insert(["_id": .objectId(ObjectId.generate()), "name": .string("new \(i)"), "brand_new": .document(["k": .int32(Int32(i))]),
                                "another_new": .datetime(1_800_000_000_000)]))
        }
        let result = try await mongo.bulkWrite(database: database, collection: "apps", ops)
        XCTAssertEqual(result.writeErrors, [])
        try await assertConverged()
        let columns = try await connection.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'apps'", [schema]).rows
        let types = Dictionary(uniqueKeysWithValues: columns.map { ($0[0]!, $0[1]!) })
        XCTAssertEqual(types["qty"], "double precision", "int32/int64 mix widened to bigint, then to double")
        XCTAssertEqual(types["_id"], "character")
        XCTAssertEqual(types["price"], "numeric")
        XCTAssertEqual(types["meta"], "jsonb")
        XCTAssertNotNil(types["brand_new"], "new fields become new columns")
        XCTAssertNotNil(types["replaced_field"])
        XCTAssertNotNil(types["late_field"])
        stop(process)
    }

    /// Snapshot pages used to be `limit` documents whatever their size: the first page of wide documents held
    /// thousands of them (far past `memory_budget`; a crash loop on real data). A page now ends at its byte size.
    func testSnapshotPagesOfWideDocumentsEndAtThePageSize() async throws {
        let wide = String(repeating: "x", count: 100_000)
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...60).map { (i: Int) -> WriteOperation in
            .insert(["_id": .int32(Int32(i)), "blob": .string(wide)])
        })
        let config = try writeConfig()
        let result = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let dir = try SpoolDirectory(root: state + "/spool", stream: "apps")
        let pages = try dir.sequencesOnDisk().map { try SpoolSegmentReader.read(path: dir.segmentPath($0)).changes.count }
        XCTAssertEqual(pages.reduce(0, +), 60)
        // 1 MiB pages: 11 documents of 100 KB (the one that crosses the size ends the page).
        XCTAssertTrue(pages.allSatisfy { $0 <= 11 }, "documents per page: \(pages)")
    }

    /// The snapshot's seed (a change stream) and its pages went wherever the URL's read preference sent each:
    /// with `secondary…`, members at different points, and writes between them in neither copy nor tail. They
    /// read the primary now — seen here as a snapshot that works though the URL asks for a secondary the
    /// single-member dev set does not have (only a real replica set can show the members disagreeing).
    func testSnapshotReadsThePrimaryWhateverTheURLsReadPreference() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...50).map { (i: Int) -> WriteOperation in
            .insert(["_id": .int32(Int32(i)), "name": .string("app \(i)")])
        })
        let config = try writeConfig(mongoURL: mongoURL + (mongoURL.contains("?") ? "&" : "?") + "readPreference=secondary")
        let result = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("snapshot spooled"), result.stdout)
    }

    /// A binary `_id` becomes a bytea key: deletes must name it in bytea's `\x` form too (they once sent bare hex,
    /// which bytea reads as text, so the row stayed).
    func testDeletesOfBinaryKeysRemoveTheirRows() async throws {
        let keys = (0..<3).map { BSON.binary(BSONBinary(subtype: 0, data: [0x0a, UInt8($0), 0xff])) }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", keys.map { .insert(["_id": $0, "name": "bin"]) })
        let (process, _) = try startRun(try writeConfig())
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.delete(filter: ["_id": keys[1]])])
        try await waitFor("the delete") {
            try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0] == "2"
        }
        let left = try await connection.query("SELECT encode(_id, 'hex') FROM \(appsTable) ORDER BY 1").rows.map { $0[0] }
        XCTAssertEqual(left, ["0a00ff", "0a02ff"])
        stop(process)
    }

    /// Issue "A local Redshift…" fix 3 on PostgreSQL: widening `_id` (char(24) → varchar) keeps the primary key
    /// (the old column swap dropped it silently, and `discover` then showed `key=NONE`).
    func testWideningTheKeyColumnKeepsThePrimaryKey() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...300).map { .insert(["_id": .int32(Int32($0)), "name": "numbered"]) })
        let (process, _) = try startRun(try writeConfig())
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        // integer → varchar: no ALTER TYPE can do it, the column is swapped (or the table rebuilt).
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [
            .insert(["_id": "a-string-key", "name": "stringly"]),
            .update(filter: ["_id": .int32(1)], update: ["$set": .document(["name": "after the widening"])], upsert: false),
        ])
        try await assertConverged()
        let key = try await connection.query("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.conrelid = '\(appsTable)'::regclass AND c.contype = 'p'
            """).rows
        XCTAssertEqual(key.map { $0[0] }, ["_id"], "the key column is still the primary key")
        XCTAssertTrue(key.first?[1]?.hasPrefix("character varying") ?? false, "and it was widened: \(key)")
        stop(process)
    }

    func testKillNineDuringSnapshotAndDuringStreaming() async throws {
        let ids = try await seed(mongo, count: 20_000)
        let config = try writeConfig(batch: "64KiB")
        var (process, _) = try startRun(config)
        try await waitFor("snapshot pages applied") { (Fixtures.streamCounters(stateDirectory: state, stream: "apps")?.applied ?? 0) > 1_000 }
        XCTAssertEqual(phase("apps"), "snapshotting")
        kill(process.processIdentifier, SIGKILL)
        process.waitPolling()
        (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "apps",
                                      ids[0..<3000].map { .update(filter: ["_id": .objectId($0)], update: ["$set": .document(["name": "s1"])], upsert: false) })
        let applied = Fixtures.streamCounters(stateDirectory: state, stream: "apps")!.applied
        try await waitFor("streaming applies") { (Fixtures.streamCounters(stateDirectory: state, stream: "apps")?.applied ?? 0) > applied }
        kill(process.processIdentifier, SIGKILL)
        process.waitPolling()
        _ = try await mongo.bulkWrite(database: database, collection: "apps", ids[3000..<3300].map { .delete(filter: ["_id": .objectId($0)]) })
        (process, _) = try startRun(config)
        try await assertConverged()
        stop(process)
    }

    /// A state older than the target — restored from a backup, or a failover of a shared PostgreSQL state store
    /// that lost its last commits — numbers new batches with sequences the target's checkpoint already passed. The
    /// fence took them for replays and skipped them: changes lost without a word. The applier now starts the
    /// numbering after the target's checkpoint.
    func testAStateOlderThanTheTargetDoesNotSkipNewBatches() async throws {
        _ = try await seed(mongo, count: 50)
        let config = try writeConfig(batch: "64KiB")
        var (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        for i in 0..<3 {
            _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": .objectId(ObjectId.generate()), "name": .string("tail \(i)")])])
            try await assertConverged()
        }
        stop(process)
        do {
            // The lost commits: the state's sequence counter back where it started.
            let db = try SQLiteDatabase(path: state + "/state.db")
            try db.execute("UPDATE streams SET next_seq = 1")
        }
        (process, _) = try startRun(config)
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": .objectId(ObjectId.generate()), "name": "after the restore"])])
        try await assertConverged()
        stop(process)
    }

    /// Issue "Nothing lost, nothing stuck" item 5: documents deleted while the history was lost used to stay in
    /// the table for good (the re-snapshot only upserts). The re-snapshot sweeps rows of earlier generations.
    func testResnapshotAfterLostHistoryRemovesDocumentsDeletedMeanwhile() async throws {
        let url = try await startSmallHistoryMongo(history: 500)
        let small = try MongoClient(url: url)
        let ids = try await seed(small, count: 300)
        let config = try writeConfig(mongoURL: url)
        var (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        try await assertConverged(small)
        stop(process)
        // While mongoshift is stopped: 60 deletes, then more changes than the history holds.
        _ = try await small.bulkWrite(database: database, collection: "apps", ids[0..<60].map { .delete(filter: ["_id": .objectId($0)]) })
        for round in 0..<3 {
            _ = try await small.bulkWrite(database: database, collection: "apps", ids[60...].map {
                .update(filter: ["_id": .objectId($0)], update: ["$set": .document(["round": .int32(Int32(round))])], upsert: false)
            })
        }
        let base: String
        (process, base) = try startRun(config)
        try await waitFor("the history loss") { MongoshiftProcess.output(base).stderr.contains("history lost") }
        try await assertConverged(small)
        let rows = try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0]
        XCTAssertEqual(rows, "240", "the 60 documents deleted during the lost window are gone from the table")
        stop(process)
    }

    /// A quiet stream's token falls off the history while other collections are busy; the server then becomes
    /// unreachable for longer than the driver's own resume allows. The reopen must start from the newest idle
    /// token the stream persisted, not from the token the tailer started with (history lost: a re-snapshot).
    func testReopenAfterAnOutageStartsFromTheNewestIdleToken() async throws {
        let (url, pid) = try await startPrivateMongo(history: 200)
        let small = try MongoClient(url: url)
        _ = try await seed(small, count: 20)
        // Short driver timeouts, so the outage below fails the driver's resume and the tailer reopens the stream.
        let separator = url.contains("?") ? "&" : "?"
        let config = try writeConfig(mongoURL: url + separator + "serverSelectionTimeoutMS=1500&connectTimeoutMS=1000&socketTimeoutMS=1500")
        let (process, base) = try startRun(config)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        try await assertConverged(small)
        // 600 events elsewhere: the stream's first token leaves the 200-event history; its idle token follows them.
        for _ in 0..<6 {
            _ = try await small.bulkWrite(database: database, collection: "elsewhere", (0..<100).map { _ in .insert(["_id": .objectId(ObjectId.generate())]) })
        }
        try await Task.sleep(for: .seconds(3))
        kill(pid, SIGSTOP)
        try await waitFor("the tailer to give up on the driver's resume", timeout: 60) {
            MongoshiftProcess.output(base).stderr.contains("change stream interrupted")
        }
        kill(pid, SIGCONT)
        _ = try await small.bulkWrite(database: database, collection: "apps", [.insert(["_id": .objectId(ObjectId.generate()), "name": "after the outage"])])
        try await assertConverged(small)
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertFalse(log.contains("history lost"), log)
        XCTAssertEqual(log.split(separator: "\n").filter { $0.contains("snapshot planned") }.count, 1, "the first snapshot only:\n\(log)")
        stop(process)
    }

    /// A collection built apart and renamed onto the watched name (renameCollection with dropTarget; an
    /// aggregation's `$out` does the same) was handled as a drop: the table kept the old documents (`on_drop: keep`)
    /// and never got the new ones, which never passed through the change stream. It is copied again.
    func testACollectionReplacedByARenameIsCopiedAgain() async throws {
        _ = try await seed(mongo, count: 50)
        let (process, base) = try startRun(try writeConfig())
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        try await assertConverged()
        _ = try await mongo.bulkWrite(database: database, collection: "apps_rebuilt", (0..<30).map {
            .insert(["_id": .objectId(ObjectId.generate()), "name": .string("rebuilt \($0)")])
        })
        _ = try await mongo.command(["renameCollection": .string("\(database).apps_rebuilt"), "to": .string("\(database).apps"), "dropTarget": true],
                                    database: "admin")
        try await assertConverged()
        let rows = try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0]
        XCTAssertEqual(rows, "30", "the replaced collection's documents are gone from the table")
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("was renamed onto source collection") && log.contains("re-snapshotting"), log)
        // Writes after the re-snapshot keep flowing.
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": .objectId(ObjectId.generate()), "name": "after"])])
        try await assertConverged()
        stop(process)
    }

    /// A write no majority acknowledged (`w: 1`, then a failover) is rolled back by MongoDB and never reaches the
    /// change stream, but a snapshot page read with the default read concern (local) copied it: the target kept a
    /// document MongoDB no longer had, for good. Pages read majority-committed data now. (dev-mongo's
    /// stopReplProducer holds the write as unreplicated; devMongoRollBack is the failover.)
    func testASnapshotDoesNotCopyAWriteAFailoverRollsBack() async throws {
        _ = try await seed(mongo, count: 50)
        _ = try await mongo.command(["configureFailPoint": "stopReplProducer", "mode": "alwaysOn"], database: "admin")
        let client: MongoClient = mongo
        onTeardown {
            _ = try? await client.command(["devMongoRollBack": 1], database: "admin")
            _ = try? await client.command(["configureFailPoint": "stopReplProducer", "mode": "off"], database: "admin")
        }
        let ghost = ObjectId.generate()
        // Acknowledged by the primary alone (`w: 1`): the default, majority, would wait for a secondary.
        let insert = try await mongo.command(["insert": "apps", "documents": .array([.document(["_id": .objectId(ghost), "name": "rolled back"])]),
                                              "writeConcern": .document(["w": 1])], database: database)
        XCTAssertEqual(insert["n"]?.intValue, 1, "\(insert)")
        let result = try MongoshiftProcess.run(["snapshot", "--config", try writeConfig()])
        _ = try await mongo.command(["devMongoRollBack": 1], database: "admin")
        _ = try await mongo.command(["configureFailPoint": "stopReplProducer", "mode": "off"], database: "admin")
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try await connection.query("SELECT count(*), count(*) FILTER (WHERE _id = $1) FROM \(appsTable)", [ghost.description]).rows
        XCTAssertEqual(rows, [["50", "0"]], "the rolled-back document is not in the target")
    }

    /// A MongoDB before 5.0 started with `enableMajorityReadConcern: false` refuses majority reads (148): the
    /// snapshot reads its newest data instead, with a warning, rather than fail.
    func testASnapshotReadsLocalDataWhereMajorityReadsAreDisabled() async throws {
        let (url, _) = try await startPrivateMongo(arguments: ["--enableMajorityReadConcern", "false"])
        _ = try await seed(try MongoClient(url: url), count: 30)
        let result = try MongoshiftProcess.run(["snapshot", "--config", try writeConfig(mongoURL: url)])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("does not serve majority reads"), result.stderr)
        let rows = try await connection.query("SELECT count(*) FROM \(appsTable)").rows
        XCTAssertEqual(rows, [["30"]])
    }

    /// A snapshot taking longer than the oplog holds ended in a tail that could not start from the snapshot's own
    /// start, a re-snapshot, and the same again, forever. Now the copy stops once its start has left the oplog,
    /// re-snapshots once, and the second such snapshot in a row fails the stream with the reason.
    func testSnapshotsOutlivingTheOplogStopAfterTheSecond() async throws {
        let url = try await startSmallHistoryMongo(history: 300)
        let small = try MongoClient(url: url)
        _ = try await seed(small, count: 1000)
        let writer = try busyWriter(url)
        defer { writer.cancel() }
        let (status, log) = try await runUntilExit(try writeConfig(mongoURL: url))
        writer.cancel()
        XCTAssertEqual(status, 4, "its only stream failed: `run` exits 4 (it used to copy forever)\n\(log)")
        XCTAssertEqual(phase("apps"), "failed")
        XCTAssertEqual(log.split(separator: "\n").filter { $0.contains("snapshot planned") }.count, 2, "one re-snapshot, then no more:\n\(log)")
        XCTAssertTrue(log.contains("the snapshot outlived the oplog") && log.contains("oplogMinRetentionHours"), log)
        XCTAssertTrue(log.contains("the second snapshot in a row to outlive the oplog"), log)
    }

    /// The copy does not run to its end once its start has left the oplog: the owner checks every lease period.
    /// Each of the copy's reads is held 300 ms (the `failCommand` fail point, for mongoshift's connections only), so
    /// a copy takes longer than the 3 s lease whatever the machine.
    func testACopyWhoseStartLeavesTheOplogStopsBeforeItsEnd() async throws {
        let url = try await startSmallHistoryMongo(history: 300)
        let small = try MongoClient(url: url, appName: "test")
        _ = try await seed(small, count: 5000)
        _ = try await small.command(["configureFailPoint": "failCommand", "mode": "alwaysOn", "data": .document([
            "failCommands": .array(["find", "getMore"]), "blockConnection": true, "blockTimeMS": 300, "appName": "mongoshift"])],
            database: "admin")
        let writer = try busyWriter(url)
        defer { writer.cancel() }
        let config = try writeConfig(mongoURL: url, batch: "64KiB")
        try ("lease: 3s\n" + String(contentsOfFile: config, encoding: .utf8)).write(toFile: config, atomically: true, encoding: .utf8)
        let (status, log) = try await runUntilExit(config)
        writer.cancel()
        XCTAssertEqual(status, 4, log)
        let stopped = log.split(separator: "\n").filter { $0.contains("snapshot stopped: its start is no longer in the oplog") }
        XCTAssertEqual(stopped.count, 2, "both copies stopped by the watch:\n\(log)")
        XCTAssertFalse(log.contains("snapshot complete"), log)
    }

    /// Writes elsewhere until cancelled: every copy sees more events than a 300-event history holds.
    private func busyWriter(_ url: String) throws -> Task<Void, Never> {
        let busy = try MongoClient(url: url, appName: "test-writer")
        return Task { [busy, database] in
            while !Task.isCancelled {
                _ = try? await busy.bulkWrite(database: database, collection: "elsewhere", (0..<100).map { _ in .insert(["_id": .objectId(ObjectId.generate())]) })
            }
        }
    }

    /// `run` until it exits by itself (polled without holding a thread): its status and log.
    private func runUntilExit(_ config: String, timeout: Duration = .seconds(120)) async throws -> (Int32, String) {
        let (process, base) = try startRun(config)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
        if process.isRunning { stop(process) }
        return (process.isRunning ? -1 : process.terminationStatus, MongoshiftProcess.output(base).stderr)
    }

    func testHistoryLostResnapshotsOnlyThatStream() async throws {
        // A second dev server whose "oplog" holds only 1,000 events.
        let url = try await startSmallHistoryMongo(history: 1000)
        let small = try MongoClient(url: url)
        let ids = try await seed(small, count: 200)
        // The other stream: Redshift → Mongo into the same server; it must be untouched by apps' re-snapshot.
        let ordersTable = TestServers.uniqueName("orders")
        try await Fixtures.createOrders(connection, table: ordersTable, rows: 500)
        defer { Task { [connection, ordersTable] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(ordersTable)") } }
        let config = try writeConfig(mongoURL: url, extraStreams: """
          - name: orders
            from: { table: public.\(ordersTable) }
            to: { collection: orders }
            key: [id]
            watermark: updated_at
            safety_lag: 1s
        """)
        var (process, _) = try startRun(config)
        try await waitFor("both streams streaming") { phase("apps") == "streaming" && phase("orders") == "streaming" }
        try await assertConverged(small)
        stop(process)
        let ordersBefore = Fixtures.streamCounters(stateDirectory: state, stream: "orders")!
        // More writes than the history holds, while mongoshift is stopped.
        for round in 0..<8 {
            _ = try await small.bulkWrite(database: database, collection: "apps",
                                          ids.map { .update(filter: ["_id": .objectId($0)], update: ["$set": .document(["round": .int32(Int32(round))])], upsert: false) })
        }
        let base: String
        (process, base) = try startRun(config)
        try await assertConverged(small)
        let log = MongoshiftProcess.output(base).stderr
        let lost = log.split(separator: "\n").filter { $0.contains("history lost") }
        XCTAssertTrue(lost.contains { $0.contains("\"level\": \"error\"") && $0.contains("286") && $0.contains("\"stream\": \"apps\"") },
                      "logged as an error with the reason:\n\(log)")
        let ordersAfter = Fixtures.streamCounters(stateDirectory: state, stream: "orders")!
        XCTAssertEqual(ordersAfter.phase, "streaming")
        XCTAssertGreaterThanOrEqual(ordersAfter.applied, ordersBefore.applied, "orders was not re-snapshotted")
        let planned = log.split(separator: "\n").filter { $0.contains("snapshot planned") }
        XCTAssertEqual(planned.count, 1, "only apps re-snapshots")
        XCTAssertTrue(planned.allSatisfy { $0.contains("\"stream\": \"apps\"") })
        stop(process)
    }

    /// A string holding U+0000: PostgreSQL's COPY refused the whole batch (22021; jsonb 22P05) and the stream
    /// failed for good, on every start. Its document is dead-lettered; an `_id` holding one keeps its row (its key
    /// text escapes it); the stream goes on.
    func testStringsWithANulCharacterAreDeadLetteredAndTheStreamGoesOn() async throws {
        _ = try await seed(mongo, count: 5)
        let (process, _) = try startRun(try writeConfig())
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [
            .insert(["_id": "plain\u{0}key", "name": "a key with a NUL"]),
            .insert(["_id": "nul-value", "name": "before\u{0}after"]),
            .insert(["_id": "nul-nested", "name": "n", "meta": .document(["t": "x\u{0}"])]),
            .insert(["_id": "after", "name": "after the NULs"]),
        ])
        try await assertConverged(excluding: ["nul-value", "nul-nested"])
        let letters = try String(contentsOfFile: state + "/deadletter/apps.jsonl", encoding: .utf8)
        XCTAssertTrue(letters.contains("nul-value") && letters.contains("nul-nested") && letters.contains("U+0000"), letters)
        XCTAssertFalse(letters.contains("plain"), letters)
        XCTAssertEqual(phase("apps"), "streaming")
        stop(process)
    }

    func testOversizedValueIsDeadLetteredAndDropFollowsOnDrop() async throws {
        _ = try await seed(mongo, count: 50)
        let (process, base) = try startRun(try writeConfig(onDrop: "keep"))
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        let big = ObjectId.generate()
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [
            .insert(["_id": .objectId(big), "name": .string(String(repeating: "x", count: 70_000))]),
            .insert(["_id": .objectId(ObjectId.generate()), "name": "after the big one"]),
        ])
        try await assertConverged(excluding: [big.description])
        let letters = try String(contentsOfFile: state + "/deadletter/apps.jsonl", encoding: .utf8)
        XCTAssertTrue(letters.contains(big.description) && letters.contains("65535"), letters)
        // Drop: on_drop keep leaves the table and records the event.
        let rowsBefore = try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0]
        try await mongo.drop(database: database, collection: "apps")
        try await waitFor("drop noticed") {
            let s = try await StateStore(directory: state, readOnly: true).stream("apps")?.lastError
            return s?.contains("drop") ?? false
        }
        let rowsAfter = try await connection.query("SELECT count(*) FROM \(appsTable)").rows[0][0]
        XCTAssertEqual(rowsAfter, rowsBefore, "on_drop: keep")
        // The collection comes back: the stream follows it.
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": .objectId(ObjectId.generate()), "name": "reborn"])])
        try await waitFor("new collection's documents arrive") {
            try await connection.query("SELECT count(*) FROM \(appsTable) WHERE name = 'reborn'").rows[0][0] == "1"
        }
        stop(process)
        // One drop, handled once: the `invalidate` that follows it was a second drop (a second truncate with
        // `on_drop: truncate`, a second error recorded).
        let handled = MongoshiftProcess.output(base).stderr.components(separatedBy: "keeping the target table as it is").count - 1
        XCTAssertEqual(handled, 1, "the drop and its invalidate are one event")
    }

    func testVerifyFindsTableDifferencesAndRepairFixesThem() async throws {
        let ids = try await seed(mongo, count: 100)
        let config = try writeConfig()
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        XCTAssertEqual(try MongoshiftProcess.run(["verify", "--config", config]).status, 0)
        try await connection.execute("UPDATE \(appsTable) SET name = 'tampered' WHERE _id = '\(ids[0])'")
        try await connection.execute("DELETE FROM \(appsTable) WHERE _id = '\(ids[1])'")
        try await connection.execute("INSERT INTO \(appsTable) (_id, name) VALUES ('\(ObjectId.generate())', 'extra')")
        let found = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(found.status, 1)
        XCTAssertTrue(found.stdout.contains("3 differences (changed 1, missing 1, extra 1)"), found.stdout)
        let repaired = try MongoshiftProcess.run(["verify", "--config", config, "--repair"])
        XCTAssertEqual(repaired.status, 0, repaired.stdout + repaired.stderr)
        XCTAssertEqual(try MongoshiftProcess.run(["verify", "--config", config]).status, 0)
        try await assertConverged()
    }

    /// `verify` lays documents out as the stream does: nested fields down to `flatten` levels, or (`flatten: 0`)
    /// the whole document in one `doc` column. It compared top-level fields only, so every document of a stream
    /// with another depth was reported changed.
    func testVerifyComparesDocumentsAsTheStreamFlattensThem() async throws {
        let ids = try await seed(mongo, count: 60)
        for (depth, tamper) in [(2, "meta_tags = '[\"tampered\"]'"), (3, "meta_deep_x = -1"), (0, "doc = '{\"name\": \"tampered\"}'")] {
            let table = "\(schema).apps_\(depth)"
            let path = directory + "/flatten-\(depth).yaml"
            try """
            state: \(state)-\(depth)
            redshift: { url: "\(pg)", dialect: postgres }
            mongo: { url: "\(mongoURL)", database: \(database) }
            streams:
              - { name: apps_\(depth), from: { collection: apps }, to: { table: \(table) }, flatten: \(depth) }
            """.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", path]).status, 0, "flatten \(depth)")
            let clean = try MongoshiftProcess.run(["verify", "--config", path])
            XCTAssertEqual(clean.status, 0, "flatten \(depth): \(clean.stdout)")
            try await connection.execute("UPDATE \(table) SET \(tamper) WHERE _id = '\(ids[3])'")
            let found = try MongoshiftProcess.run(["verify", "--config", path])
            XCTAssertEqual(found.status, 1, "flatten \(depth)")
            XCTAssertTrue(found.stdout.contains("1 differences (changed 1, missing 0, extra 0)"), "flatten \(depth): \(found.stdout)")
        }
    }
}
