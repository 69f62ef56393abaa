import Foundation
import MongoClient
import PostgresClient
import Replication
import TestSupport
import XCTest

/// Secrets stay secret, identifiers are always quoted and values always bound, the metrics listener is local by
/// default and everything mongoshift writes is private. (TLS pass-through: fixtures/bad/config/35, 36.)
final class SecurityTests: IntegrationTestCase {
    override var namePrefix: String { "sec" }

    override func setUp() async throws {
        try await super.setUp()
        onTeardown { [connection] in _ = try? await connection?.execute(#"DROP TABLE IF EXISTS public."Order ""Items"" select""#) }
    }


    /// Every file under `path`, read as bytes (state db, WAL, spool, dead letters).
    func allBytes(under path: String) -> [(String, Data)] {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
        var out: [(String, Data)] = []
        for case let file as String in walker {
            if let data = FileManager.default.contents(atPath: path + "/" + file) { out.append((file, data)) }
        }
        return out
    }

    // MARK: - secrets

    func testCanaryPasswordNeverAppearsInOutputLogsStateOrMetrics() async throws {
        let canary = "Canary-Pw-8b1e5x"
        try await Fixtures.createOrders(connection, table: table, rows: 2_000)
        try await TestServers.createPasswordRole(connection, "pw_secret", password: canary)
        var url = URLComponents(string: pg)!
        url.user = "pw_secret"
        url.password = canary
        let secretURL = url.string!
        let env = ["MONGOSHIFT_SECRET_PG": secretURL]
        let yaml = """
        state: \(state)
        redshift: { url: "${MONGOSHIFT_SECRET_PG}", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms, batch_bytes: 64KiB }
        streams:
          - name: orders
            from: { table: public.\(table) }
            to: { collection: orders }
            key: [id]
            watermark: updated_at
        """
        let config = directory + "/secret.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        var outputs: [(String, String)] = []
        func record(_ what: String, _ r: MongoshiftProcess.Result) { outputs.append((what, r.stdout + r.stderr)) }

        record("snapshot", try MongoshiftProcess.run(["snapshot", "--config", config, "--log-level", "trace"], environment: env))
        // A daemon with its connections cut (errors and retries logged at trace level), then a crash point.
        let port = TestServers.listenerPort()
        let (process, base) = try MongoshiftProcess.start(["run", "--config", config, "--log-level", "trace", "--metrics-addr", "127.0.0.1:\(port)"],
                                                          environment: env.merging(["MONGOSHIFT_CRASH_AT": "apply.written:3"]) { $1 })
        running.append(process)
        // Scraped once the endpoint answers (before any change, so before the crash point can fire), then again
        // after each round of cut connections while the process lives.
        let answering = Date().addingTimeInterval(15)
        while !outputs.contains(where: { $0.0 == "metrics" }) && process.isRunning && Date() < answering {
            if let metrics = HTTPGet.body(port: port, path: "/metrics") { outputs.append(("metrics", metrics)) } else { usleep(100_000) }
        }
        for i in 0..<6 {
            try await Task.sleep(for: .milliseconds(500))
            _ = try await connection.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pw_secret'")
            try await connection.execute("UPDATE public.\(table) SET note = 'sec \(i)', updated_at = now() WHERE id % 10 = \(i)")
            if process.isRunning, let metrics = HTTPGet.body(port: port, path: "/metrics") {
                outputs.append(("metrics", metrics))
            }
        }
        process.waitPolling(timeout: 10)
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitPolling() }
        record("run (crashed)", MongoshiftProcess.output(base))
        record("lag --json", try MongoshiftProcess.run(["lag", "--json", "--config", config], environment: env))
        record("lag", try MongoshiftProcess.run(["lag", "--table", "--config", config], environment: env))
        record("check", try MongoshiftProcess.run(["check", "--config", config], environment: env))
        record("verify", try MongoshiftProcess.run(["verify", "--config", config], environment: env))
        // Errors that carry the URL: a database that does not exist, and a wrong password.
        record("bad database", try MongoshiftProcess.run(["snapshot", "--config", config],
                                                         environment: ["MONGOSHIFT_SECRET_PG": secretURL.replacingOccurrences(of: "/postgres", with: "/nope")]))
        var wrong = url
        wrong.password = canary + "-wrong"
        record("wrong password", try MongoshiftProcess.run(["check", "--config", config], environment: ["MONGOSHIFT_SECRET_PG": wrong.string!]))
        // A Mongo URL with credentials the server refuses.
        let mongoSecret = mongoURL.replacingOccurrences(of: "mongodb://", with: "mongodb://admin:\(canary)@")
        let mongoYaml = yaml.replacingOccurrences(of: "url: \"\(mongoURL)\"", with: "url: \"\(mongoSecret)\"")
        try mongoYaml.write(toFile: directory + "/mongo-secret.yaml", atomically: true, encoding: .utf8)
        record("mongo credentials", try MongoshiftProcess.run(["check", "--config", directory + "/mongo-secret.yaml"], environment: env))

        XCTAssertTrue(outputs.contains { $0.0 == "metrics" }, "metrics were scraped")
        XCTAssertTrue(outputs.contains { $0.1.contains("pw_secret") }, "the user name is shown (only the password is hidden)")
        XCTAssertTrue(outputs.contains { $0.1.contains("***") }, "redacted URLs appear in errors")
        for (what, text) in outputs {
            XCTAssertFalse(text.contains(canary), "\(what) leaks the password:\n\(text.suffix(1500))")
        }
        let files = allBytes(under: state)
        XCTAssertGreaterThan(files.count, 0)
        for (file, data) in files {
            XCTAssertNil(data.range(of: Data(canary.utf8)), "\(file) holds the password")
        }
    }

    // MARK: - identifiers and values

    /// A refused MongoDB login is "cannot connect" (exit 3, one line, the password redacted) — libmongoc reports
    /// it as a client error, which used to read as an internal error (exit 4).
    func testARefusedMongoLoginExitsThreeWithThePasswordRedacted() async throws {
        let canary = "Canary-Mongo-9f3k2q"
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try writeStreamsConfig("""
          - name: orders
            from: { table: public.\(table) }
            to: { collection: orders }
            key: [id]
            watermark: updated_at
        """, mongo: mongoURL.replacingOccurrences(of: "mongodb://", with: "mongodb://bob:\(canary)@"), name: "login.yaml")
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 3, result.stderr)
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("mongoshift: error:") }
        XCTAssertEqual(errors.count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("authentication failed"), result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains(canary), "the password leaked")
    }

    func testHostileIdentifiersAndValuesReplicateBothWays() async throws {
        // Quotes, spaces, upper case, SQL keywords, and a value shaped like an injection.
        let source = #"public."Order ""Items"" select""#
        let injection = "x'); DROP TABLE public.\(table); --"
        try await connection.execute("CREATE TABLE public.\(table) (id int)")  // the injection's target: must survive
        try await connection.execute(#"""
            CREATE TABLE \#(source) ("Id" bigint PRIMARY KEY, "select" text, "my col" int, "we""ird" text, "UpperCase" numeric(10,2),
                                     "Updated At" timestamptz NOT NULL DEFAULT now());
            INSERT INTO \#(source) VALUES (1, 'from', 10, 'quote " here', 1.50), (2, $q$\#(injection)$q$, 20, 'back\slash', 2.25),
                                          (3, NULL, NULL, NULL, NULL);
            """#)
        let yaml = #"""
        state: \#(state)
        redshift: { url: "\#(pg)", dialect: postgres }
        mongo: { url: "\#(mongoURL)", database: \#(database) }
        defaults: { poll_interval: 200ms }
        streams:
          - name: items
            from: { table: 'public."Order ""Items"" select"' }
            to: { collection: items }
            key: [Id]
            watermark: Updated At
          - name: back
            from: { collection: items }
            to: { table: '\#(table)."Back ""Items"" from"' }
        """#
        let config = directory + "/ids.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let first = try MongoshiftProcess.run(["snapshot", "--config", config, "--stream", "items"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let docs = try await mongo.findAll(database: database, collection: "items", sort: ["_id": 1])
        XCTAssertEqual(docs.count, 3)
        XCTAssertEqual(docs.first?["my col"], .int32(10))
        XCTAssertEqual(docs.first?["we\"ird"], .string("quote \" here"))
        XCTAssertEqual(docs.dropFirst().first?["select"], .string(injection), "values are bound, never interpolated")
        let second = try MongoshiftProcess.run(["snapshot", "--config", config, "--stream", "back"])
        XCTAssertEqual(second.status, 0, second.stderr)
        let back = try await connection.query(#"SELECT "select", "my_col", "we_ird" FROM \#(table)."Back ""Items"" from" ORDER BY _id"#)
        XCTAssertEqual(back.rows.count, 3)
        XCTAssertEqual(back.rows[1][0], injection)
        XCTAssertEqual(back.rows[0][2], "quote \" here")
        let survivor = try await connection.query("SELECT count(*) FROM public.\(table)")
        XCTAssertEqual(survivor.rows.count, 1, "the injection's target still exists")
    }

    // MARK: - exposure

    func testMetricsListenBindsLoopbackByDefault() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let (process, base) = try MongoshiftProcess.start(["run", "--config", config])
        running.append(process)
        let deadline = Date().addingTimeInterval(30)
        while !MongoshiftProcess.output(base).stderr.contains("serving metrics") && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("http://127.0.0.1:9187/metrics"))
        // /proc/net/tcp: local address 0100007F:23E3 (127.0.0.1:9187) listening (state 0A), never 00000000:23E3.
        let tcp = try String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)
        let listening = tcp.split(separator: "\n").filter { $0.contains(":23E3 ") && $0.split(separator: " ")[3] == "0A" }
        XCTAssertTrue(listening.contains { $0.contains("0100007F:23E3") }, "listens on loopback:\n\(listening)")
        XCTAssertFalse(listening.contains { $0.contains("00000000:23E3") }, "not on every interface")
        XCTAssertNotNil(HTTPGet.body(port: 9187, path: "/healthz"))
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling(timeout: 20)
    }

    func testStateDirectoryAndFilesArePrivate() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        try await connection.execute("UPDATE public.\(table) SET created_at = 'infinity' WHERE id = 2")  // one dead letter
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config]).status, 0)
        func mode(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1 }
        XCTAssertEqual(mode(state), 0o700, "state directory")
        XCTAssertEqual(mode(state + "/state.db"), 0o600, "state db")
        XCTAssertEqual(mode(state + "/spool"), 0o700)
        XCTAssertEqual(mode(state + "/deadletter"), 0o700)
        for (file, _) in allBytes(under: state) {
            let m = mode(state + "/" + file)
            XCTAssertEqual(m & 0o077, 0, "\(file) is private (mode \(String(m, radix: 8)))")
        }
    }
}
