import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `lag` while `run` is live, `--max-lag` exit codes, and the snapshot progress line on a terminal.
final class OperabilityTests: IntegrationTestCase {
    override var namePrefix: String { "orders" }

    func lagSeconds(_ config: String) throws -> Double? {
        let result = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let streams = json?["streams"] as? [[String: Any]]
        XCTAssertEqual(streams?.first?["name"] as? String, "orders")
        for key in ["direction", "phase", "lag_seconds", "applied_position", "source_head", "spool_segments", "spool_bytes", "deadletters", "last_error"] {
            XCTAssertTrue(streams?.first?.keys.contains(key) ?? false, "lag --json has \(key)")
        }
        return streams?.first?["lag_seconds"] as? Double
    }

    func testLagRisesWhileTargetIsDownAndFallsAfter() async throws {
        guard DevServers.mongoDirectory != nil else { throw XCTSkip("needs MONGOSHIFT_TEST_MONGO_DIR (set by ops/test)") }
        try await Fixtures.createOrders(connection, table: table, rows: 2_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let (process, _) = try MongoshiftProcess.start(["run", "--config", config])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(60)
        while Fixtures.streamCounters(stateDirectory: directory + "/state", stream: "orders")?.phase != "streaming" && Date() < deadline {
            usleep(100_000)
        }
        try await connection.execute("UPDATE public.\(table) SET note = 'a', updated_at = now() WHERE id <= 10")
        try await Task.sleep(for: .seconds(3))
        let before = try XCTUnwrap(lagSeconds(config))
        XCTAssertLessThan(before, 3, "caught up")
        XCTAssertEqual(try MongoshiftProcess.run(["lag", "--config", config, "--max-lag", "1m"]).status, 0)

        try DevServers.stopMongo()
        for round in 0..<3 {
            try await connection.execute("UPDATE public.\(table) SET note = 'down \(round)', updated_at = now() WHERE id <= 20")
            try await Task.sleep(for: .seconds(2))
        }
        let during = try XCTUnwrap(lagSeconds(config))
        XCTAssertGreaterThan(during, before + 3, "lag rises while the target is down")
        XCTAssertEqual(try MongoshiftProcess.run(["lag", "--config", config, "--max-lag", "2s"]).status, 1, "--max-lag exceeded → exit 1")

        try DevServers.startMongo()
        var after = during
        let recover = Date().addingTimeInterval(60)
        while after >= 3 && Date() < recover {
            try await Task.sleep(for: .seconds(1))
            after = try XCTUnwrap(lagSeconds(config))
        }
        XCTAssertLessThan(after, 3, "lag falls after the target returns")
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling()
    }

    /// Staging files a killed process left in `<state>/tmp` are removed by the next writer (they used to pile up
    /// across crashes, outside `spool_max_bytes`); a file in use by a `verify --repair` meanwhile (recent) stays.
    func testLeftoverStagingFilesAreRemovedAtStart() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let tmp = state + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let old = tmp + "/apps-7-1234-0.json.zst", recent = tmp + "/apps-8-5678-0.json.zst"
        for path in [old, recent] { XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 1000))) }
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: old)
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: old), "a crash's leftover is removed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: recent), "a file touched within the hour stays")
    }

    func testSnapshotProgressIsRedrawnOnATerminal() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              defaults: "batch_bytes: 64KiB")
        // `script` gives the process a pseudo-terminal, as an operator's shell would.
        let command = "\(MongoshiftProcess.binary) snapshot --spool-only --config \(config)"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        p.arguments = ["-qec", command, directory + "/typescript"]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitPolling()
        let raw = try String(contentsOfFile: directory + "/typescript", encoding: .utf8)
        let redraws = raw.components(separatedBy: "\u{1B}[2K").count - 1
        XCTAssertGreaterThan(redraws, 3, "the progress line is redrawn in place")
        XCTAssertNotNil(raw.firstMatch(of: /orders: \d+\/20000 rows \([\d.]+%\), \d+ rows\/s, ETA \w+, partitions \d\/4/), raw)
        XCTAssertTrue(raw.contains("orders: 20000/20000 rows (100.0%)"), "the final line shows completion")
        XCTAssertFalse(raw.contains("{\"time\""), "human logs on a terminal, not JSON")
    }
}

extension OperabilityTests {
    func testVerifyFindsHandMadeDifferencesAndRepairFixesThem() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 5_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let clean = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertTrue(clean.stdout.contains("orders: 5000 rows checked, 0 differences"), clean.stdout)

        let mongo = try MongoClient(url: mongoURL)
        _ = try await mongo.bulkWrite(database: database, collection: "orders", [
            .update(filter: ["_id": .int64(10)], update: ["$set": .document(["note": "tampered"])], upsert: false),  // changed value
            .delete(filter: ["_id": .int64(20)]),                                                                      // missing row
            .insert(["_id": .int64(999_999), "note": "not in the source"]),                                           // extra row
        ])
        let found = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(found.status, 1, "differences → exit 1")
        XCTAssertTrue(found.stdout.contains("3 differences (changed 1, missing 1, extra 1)"), found.stdout)
        XCTAssertTrue(found.stdout.contains("changed: 10") && found.stdout.contains("missing: 20") && found.stdout.contains("extra: 999999"), found.stdout)

        let repaired = try MongoshiftProcess.run(["verify", "--config", config, "--repair"])
        XCTAssertEqual(repaired.status, 0, repaired.stdout + repaired.stderr)
        XCTAssertTrue(repaired.stdout.contains("3 repaired"), repaired.stdout)
        let after = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(after.status, 0, after.stdout)
        let diffs = try await Convergence.differences(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertEqual(diffs, [])
    }
}

extension OperabilityTests {
    /// A key with a timestamp cannot be looked up from its Mongo form (milliseconds): `verify` skipped looking for
    /// documents whose rows are gone and said "0 differences". They are counted now.
    func testVerifyCountsDocumentsWithoutRowsWhenTheKeyCannotBeLookedUp() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (ts timestamptz NOT NULL, device int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (ts, device));
            INSERT INTO public.\(table) (ts, device) SELECT timestamptz '2026-01-01 00:00:00.123456+00' + g * interval '1 minute', g % 3 FROM generate_series(1, 50) g;
            """)
        let config = try writeStreamsConfig("""
          - name: events
            from: { table: public.\(table) }
            to: { collection: events }
            key: [ts, device]
            watermark: updated_at
        """)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let clean = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        try await connection.execute("DELETE FROM public.\(table) WHERE device = 0 AND ts < timestamptz '2026-01-01 00:12:00+00'")
        let found = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(found.status, 1, found.stdout + found.stderr)
        XCTAssertTrue(found.stdout.contains("extra: 3 documents without a live source row"), found.stdout)
    }

    /// `verify --repair` beside `run`: a document newer than the row verify read (as if the tail applied a later
    /// change meanwhile) is left alone — the repair wrote the older row over it, and the tail had moved on; the
    /// same version with other content (drift) is repaired.
    func testRepairNeverWritesOverANewerDocument() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let mongo = try MongoClient(url: mongoURL)
        _ = try await mongo.bulkWrite(database: database, collection: "orders", [
            .update(filter: ["_id": .int64(10)], update: ["$set": .document(["note": "drifted"])], upsert: false),
            .update(filter: ["_id": .int64(30)], update: ["$set": .document(["note": "newer", "_mongoshift.v": .int64(Int64.max - 1)])], upsert: false),
        ])
        let repaired = try MongoshiftProcess.run(["verify", "--config", config, "--repair"])
        XCTAssertTrue(repaired.stdout.contains("1 repaired"), repaired.stdout)
        let ten = try await mongo.findAll(database: database, collection: "orders", filter: ["_id": .int64(10)]).first
        XCTAssertNotEqual(ten?["note"], "drifted", "same-version drift repaired")
        let thirty = try await mongo.findAll(database: database, collection: "orders", filter: ["_id": .int64(30)]).first
        XCTAssertEqual(thirty?["note"], "newer", "a newer document is not overwritten")
    }
}

extension OperabilityTests {
    func scrape(_ url: String) throws -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", """
            import sys, urllib.request, urllib.error
            try:
                r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())
            except urllib.error.HTTPError as e:
                print(e.code); print(e.read().decode())
            """, url]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitPolling()
        let text = String(decoding: data, as: UTF8.self)
        let status = Int(text.split(separator: "\n").first ?? "") ?? 0
        return (status, text)
    }

    func counter(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") && line.contains("stream=\"orders\"") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    func testMetricsEndpointCountersMoveAndHealthz() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 1_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let port = TestServers.listenerPort()
        let (process, _) = try MongoshiftProcess.start(["run", "--config", config, "--metrics-addr", "127.0.0.1:\(port)"])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(60)
        while Fixtures.streamCounters(stateDirectory: directory + "/state", stream: "orders")?.phase != "streaming" && Date() < deadline {
            usleep(100_000)
        }
        let (status, first) = try scrape("http://127.0.0.1:\(port)/metrics")
        XCTAssertEqual(status, 200)
        let appliedBefore = try XCTUnwrap(counter(first, "mongoshift_rows_applied_total"), first)
        XCTAssertGreaterThanOrEqual(appliedBefore, 1_000)
        XCTAssertNotNil(counter(first, "mongoshift_rows_extracted_total"))
        XCTAssertTrue(first.contains("mongoshift_batch_apply_seconds"), "batch latency histogram")
        try await connection.execute("UPDATE public.\(table) SET note = 'm', updated_at = now() WHERE id <= 50")
        var appliedAfter = appliedBefore
        let moved = Date().addingTimeInterval(30)
        while appliedAfter < appliedBefore + 50 && Date() < moved {
            try await Task.sleep(for: .milliseconds(300))
            appliedAfter = counter(try scrape("http://127.0.0.1:\(port)/metrics").1, "mongoshift_rows_applied_total") ?? 0
        }
        XCTAssertGreaterThanOrEqual(appliedAfter, appliedBefore + 50, "counters move")
        let (healthStatus, _) = try scrape("http://127.0.0.1:\(port)/healthz")
        XCTAssertEqual(healthStatus, 200)
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling()
    }

    /// A client that connects to the metrics endpoint and sends nothing (a half-open scraper, a port scan) held the
    /// one server thread in `read` for good: /metrics and /healthz answered nobody after it. Idle connections are
    /// dropped after a few seconds.
    func testAnIdleMetricsConnectionDoesNotHangTheEndpoint() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let port = TestServers.listenerPort()
        try start(["run", "--config", config, "--metrics-addr", "127.0.0.1:\(port)"])
        try await waitFor("the metrics endpoint") { HTTPGet.body(port: port, path: "/healthz", timeout: 5) != nil }
        let idle = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(idle) }
        XCTAssertEqual(Socket.withAddress(port: port) { connect(idle, $0, $1) }, 0)
        XCTAssertNotNil(HTTPGet.body(port: port, path: "/healthz", timeout: 20), "answered with an idle connection open")
    }
}
