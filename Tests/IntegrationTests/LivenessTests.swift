import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Nothing stuck: a trickle of changes reaches the target promptly, a refused login at start is retried until it
/// works, and `run` exits when every stream has failed instead of idling.
final class LivenessTests: IntegrationTestCase {
    override var namePrefix: String { "live" }

    var appsTable: String { "public.\(table)" }

    func mongoConfig(pg: String? = nil, pollInterval: String = "1s", target: String? = nil) throws -> String {
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg ?? self.pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: \(pollInterval) }
        streams:
          - name: apps
            from: { collection: apps }
            to: { table: \(target ?? appsTable) }
        """
        let path = directory + "/apps.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func rows(_ sql: String) async throws -> Int {
        Int(try await connection.query(sql).rows.first?.first??.description ?? "0") ?? 0
    }

    /// Issue "Nothing lost, nothing stuck" item 10: change-stream batches used to wait for 5,000 events, so a
    /// trickle never reached the target. A batch now closes after `poll_interval`.
    func testATrickleReachesTheTargetWithinAPollInterval() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": 0, "n": 0])])
        let (process, _) = try startRun(try mongoConfig(pollInterval: "1s"))
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        var inserted: [Int: Date] = [:]
        var arrived: [Int: Date] = [:]
        for i in 1...40 {
            _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": .int32(Int32(i)), "n": .int32(Int32(i))])])
            inserted[i] = Date()
            // Two inserts a second; meanwhile note which have arrived.
            let until = Date().addingTimeInterval(0.5)
            while Date() < until {
                for id in try await connection.query("SELECT _id FROM \(appsTable) WHERE _id > 0").rows.compactMap({ $0[0].flatMap(Int.init) })
                where arrived[id] == nil { arrived[id] = Date() }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await waitFor("the trickle to arrive", timeout: 30) {
            for id in try await connection.query("SELECT _id FROM \(appsTable) WHERE _id > 0").rows.compactMap({ $0[0].flatMap(Int.init) })
            where arrived[id] == nil { arrived[id] = Date() }
            return arrived.count == 40
        }
        let latencies = (1...40).map { arrived[$0]!.timeIntervalSince(inserted[$0]!) }.sorted()
        let median = latencies[20], worst = latencies.last!
        print("trickle latency: median \(String(format: "%.2f", median)) s, worst \(String(format: "%.2f", worst)) s (poll_interval 1 s)")
        XCTAssertLessThanOrEqual(median, 2.0, "within poll_interval + 1 s")
        XCTAssertLessThanOrEqual(worst, 5.0, "no change waits for a batch to fill")
        stop(process)
    }

    /// Item 11: a refused login at start used to fail the stream for good (and the process idled). In `run` it is
    /// retried with backoff, reported once, and replication starts as soon as the password works.
    func testARefusedLoginAtStartIsRetriedUntilItWorks() async throws {
        let role = TestServers.uniqueName("rotating")
        try await TestServers.createPasswordRole(connection, role, password: "old-password")
        try await connection.execute("GRANT CREATE ON DATABASE postgres TO \(role); GRANT ALL ON SCHEMA public TO \(role)")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP OWNED BY \(role); DROP ROLE IF EXISTS \(role)") }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": 1, "n": 1]), .insert(["_id": 2, "n": 2])])
        var url = URLComponents(string: pg)!
        url.user = role
        url.password = "new-password"
        // The target in a schema of the role's own (its checkpoint table too).
        let (process, base) = try startRun(try mongoConfig(pg: url.string!, pollInterval: "200ms", target: "\(table).apps"))
        try await Task.sleep(for: .seconds(8))
        XCTAssertTrue(process.isRunning, "run keeps going")
        XCTAssertNotEqual(phase("apps"), "failed", "a refused login is not a permanent failure of the stream")
        let log = MongoshiftProcess.output(base).stderr
        let reports = log.split(separator: "\n").filter { $0.contains("password authentication failed") && !$0.contains("\"level\": \"debug\"") }
        XCTAssertGreaterThanOrEqual(reports.count, 1, log)
        XCTAssertLessThanOrEqual(reports.count, 3, "reported once per change of state, not per attempt:\n\(reports.joined(separator: "\n"))")
        // The operator rotates the password: replication starts without a restart.
        try await connection.execute("ALTER ROLE \(role) PASSWORD 'new-password'")
        try await waitFor("the snapshot once the login works", timeout: 60) { self.phase("apps") == "streaming" }
        let copied = try await rows("SELECT count(*) FROM \(table).apps")
        XCTAssertEqual(copied, 2)
        stop(process)
    }

    /// Item 11: when every stream has failed permanently, `run` used to idle silently (and exit 0 on SIGTERM).
    func testRunExitsNonZeroWhenEveryStreamHasFailed() async throws {
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        streams:
          - name: one
            from: { table: public.\(table)_missing_one }
            to: { collection: one }
            key: [id]
          - name: two
            from: { table: public.\(table)_missing_two }
            to: { collection: two }
            key: [id]
        """
        let config = directory + "/missing.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try MongoshiftProcess.run(["run", "--config", config, "--metrics-addr", "off"], timeout: 60)
        XCTAssertEqual(result.status, 4, result.stderr)
        XCTAssertTrue(result.stderr.contains("every stream has failed (one, two)"), result.stderr)
        XCTAssertEqual(phase("one"), "failed")
        XCTAssertEqual(phase("two"), "failed")
    }
}
