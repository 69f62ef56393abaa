import BSON
import Foundation
import MongoClient
import PostgresClient
import S3
import TestSupport
import XCTest

/// Redshift → Mongo snapshots by UNLOAD (`extract: unload`) through ops/dev-redshift and its S3 emulator: one
/// UNLOAD per partition, files read one at a time into the spool; a crash mid-file resumes at the file's next
/// unspooled row against the same manifest (no second UNLOAD), and no file is left once the snapshot completed.
final class S3UnloadTests: S3StageTestCase {
    override var namePrefix: String { "s3unload" }
    var source: PostgresConnection!

    override func setUp() async throws {
        try await super.setUp()
        source = try await PostgresConnection.connect(rs)
        try await Fixtures.createRedshiftOrders(source, table: table, rows: 6_000)
    }

    func config(parallelism: Int = 2) throws -> String {
        try Fixtures.writeConfig(directory: directory, pg: rs, mongo: mongoURL, database: database, table: table,
                                 extra: "    extract: unload", defaults: "batch_bytes: 64KiB, parallelism: \(parallelism)", dialect: """
                                 redshift
                                   s3: { bucket: \(bucket), prefix: \(prefix), endpoint: "\(endpoint)" }
                                 """)
    }

    func unloads(after offset: UInt64) -> [StatementLog.Entry] {
        log.entries(after: offset).filter { $0.sql.hasPrefix("UNLOAD ") }
    }

    func converged() async throws -> Bool {
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        return tally.isExact && reasons.isEmpty && tally.checked > 0
    }

    func testSnapshotByUnloadCopiesEveryRowAndRemovesItsFiles() async throws {
        let offset = log.offset
        let result = try MongoshiftProcess.run(["snapshot", "--config", try config()])
        XCTAssertEqual(result.status, 0, result.stderr)
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertTrue(tally.isExact && reasons.isEmpty, "\(tally) \(reasons)")
        XCTAssertEqual(tally.checked, 6_000)
        let statements = unloads(after: offset)
        XCTAssertEqual(statements.count, 4, "one UNLOAD per partition")
        XCTAssertTrue(statements.allSatisfy { $0.ok && $0.sql.contains("TO 's3://\(bucket)/\(prefix)orders/unload/") && $0.sql.contains("MANIFEST") },
                      "\(statements.map(\.sql).prefix(1))")
        XCTAssertFalse(log.entries(after: offset).contains { $0.sql.contains("FROM \"public\".\"\(table)\"") && $0.sql.contains("ORDER BY") && $0.sql.contains("LIMIT") }, "no keyset pages")
        let left = try await s3.list(bucket, prefix: prefix)
        XCTAssertEqual(left, [], "UNLOAD files removed once the snapshot completed")
    }

    /// Issue "Redshift at warehouse scale" acceptance: an UNLOAD snapshot killed mid-file.
    func testKilledMidFileResumesInTheFileWithoutUnloadingAgain() async throws {
        // One copier: when a crash point inside a file's spooling fires, no other partition's UNLOAD is in flight
        // (one that is must run again after the crash — it was never recorded), so the count below is exact.
        let cfg = try config(parallelism: 1)
        let offset = log.offset
        // The third page recorded: the first file of a partition is only partly spooled.
        let crashed = try MongoshiftProcess.run(["snapshot", "--config", cfg], environment: ["MONGOSHIFT_CRASH_AT": "spool.recorded:3"], timeout: 120)
        XCTAssertTrue(crashed.stderr.contains("crash point spool.recorded reached"), crashed.stderr.suffix(2000).description)
        let before = unloads(after: offset).count
        let again = try MongoshiftProcess.run(["snapshot", "--config", cfg], environment: ["MONGOSHIFT_CRASH_AT": "unload.file-spooled:2"], timeout: 120)
        XCTAssertTrue(again.stderr.contains("crash point unload.file-spooled reached"), again.stderr.suffix(2000).description)
        let finish = try MongoshiftProcess.run(["snapshot", "--config", cfg], timeout: 120)
        XCTAssertEqual(finish.status, 0, finish.stderr)
        let exact = try await converged()
        XCTAssertTrue(exact, "the collection equals the table: nothing lost, nothing duplicated")
        XCTAssertEqual(unloads(after: offset).count, 4, "each partition unloaded once (resumes read the same manifest); \(before) before the restart")
        let left = try await s3.list(bucket, prefix: prefix)
        XCTAssertEqual(left, [], "no orphan file after the snapshot completed")
    }

    /// A partition's files were deleted as soon as they were spooled, before the partition was marked done: a
    /// crash (or shutdown) between the two found the manifest gone and unloaded the partition a second time.
    func testACrashAfterAPartitionsLastFileDoesNotUnloadItAgain() async throws {
        let cfg = try config(parallelism: 1)
        let offset = log.offset
        let crashed = try MongoshiftProcess.run(["snapshot", "--config", cfg], environment: ["MONGOSHIFT_CRASH_AT": "unload.partition-copied:1"], timeout: 120)
        XCTAssertTrue(crashed.stderr.contains("crash point unload.partition-copied reached"), crashed.stderr.suffix(2000).description)
        let finish = try MongoshiftProcess.run(["snapshot", "--config", cfg], timeout: 120)
        XCTAssertEqual(finish.status, 0, finish.stderr)
        let exact = try await converged()
        XCTAssertTrue(exact, "the collection equals the table")
        XCTAssertEqual(unloads(after: offset).count, 4, "each partition unloaded once")
        let left = try await s3.list(bucket, prefix: prefix)
        XCTAssertEqual(left, [], "the files are removed once the snapshot completed")
    }

    /// A pass-through proxy in front of the S3 emulator that answers the next `n` GETs of an UNLOAD manifest (n
    /// read from `<directory>/fail-manifest`) with 503 SlowDown, as S3 does under load. Prints its port.
    static let flakyProxy = """
    import sys, os, http.server, http.client
    upstream, control = sys.argv[1], sys.argv[2]
    host, port = upstream.split("//")[1].split(":")
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def relay(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            left = int(open(control).read() or "0") if os.path.exists(control) else 0
            if self.command == "GET" and self.path.split("?")[0].endswith("/manifest") and left > 0:
                open(control, "w").write(str(left - 1))
                reply = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                return
            c = http.client.HTTPConnection(host, int(port))
            c.request(self.command, self.path, body=body, headers={k: v for k, v in self.headers.items()})
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            c.close()
        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """

    /// Starts `flakyProxy` in front of the emulator; its endpoint URL.
    func startFlakyProxy() throws -> String {
        let proxy = try ScriptedEndpoint(script: Self.flakyProxy, at: directory + "/flaky-s3.py", arguments: [endpoint, directory + "/fail-manifest"])
        onTeardown { proxy.stop() }
        return proxy.url
    }

    /// A resume whose manifest read fails for a while (S3 throttling past the client's own retries) waits and
    /// reads it again; only a manifest that is gone means unloading the partition again. It used to unload again
    /// on any error: a second full UNLOAD of the partition on every passing S3 hiccup.
    func testAResumeWhoseManifestReadFailsForAWhileDoesNotUnloadAgain() async throws {
        let proxy = try startFlakyProxy()
        let cfg = try config(parallelism: 1)
        let yaml = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "endpoint: \"\(endpoint)\"", with: "endpoint: \"\(proxy)\"")
        try yaml.write(toFile: cfg, atomically: true, encoding: .utf8)
        let offset = log.offset
        let crashed = try MongoshiftProcess.run(["snapshot", "--config", cfg], environment: ["MONGOSHIFT_CRASH_AT": "spool.recorded:3"], timeout: 120)
        XCTAssertTrue(crashed.stderr.contains("crash point spool.recorded reached"), crashed.stderr.suffix(2000).description)
        XCTAssertEqual(unloads(after: offset).count, 1, "the crash came inside the first partition's files")
        // More failures in a row than the S3 client's own attempts (5): the copy itself sees the error.
        try "7".write(toFile: directory + "/fail-manifest", atomically: true, encoding: .utf8)
        let finish = try MongoshiftProcess.run(["snapshot", "--config", cfg], timeout: 180)
        XCTAssertEqual(finish.status, 0, finish.stderr.suffix(3000).description)
        XCTAssertEqual(try String(contentsOfFile: directory + "/fail-manifest", encoding: .utf8), "0", "every planned failure was served")
        let exact = try await converged()
        XCTAssertTrue(exact, "the collection equals the table")
        XCTAssertEqual(unloads(after: offset).count, 4, "each partition unloaded once: a manifest that could not be read for a while is not a lost one")
    }

    /// `extract: auto` sizes tables by svv_table_info, which Redshift shows to superusers only: `check` names the
    /// grant a regular login needs (else large tables would silently be read by SELECT pages).
    func testCheckNamesTheGrantExtractAutoNeeds() async throws {
        let cfg = try Fixtures.writeConfig(directory: directory, pg: rs, mongo: mongoURL, database: database, table: table,
                                           defaults: "batch_bytes: 64KiB", dialect: """
                                           redshift
                                             s3: { bucket: \(bucket), prefix: \(prefix), endpoint: "\(endpoint)" }
                                           """)
        let role = TestServers.uniqueName("etl")
        try await TestServers.createPasswordRole(connection, role, password: "Etl-pw-1234")
        onTeardown { [connection, source] in
            _ = try? await source?.execute("REVOKE SELECT ON svv_table_info FROM \(role)")
            _ = try? await connection?.execute("DROP OWNED BY \(role); DROP ROLE IF EXISTS \(role)")
        }
        var url = URLComponents(string: rs)!
        url.user = role
        url.password = "Etl-pw-1234"
        let yaml = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: rs, with: url.string!)
        try yaml.write(toFile: cfg, atomically: true, encoding: .utf8)
        let line = "orders: cannot read svv_table_info"
        let refused = try MongoshiftProcess.run(["check", "--config", cfg, "--min-oplog-window", "0s"])
        XCTAssertTrue(refused.stdout.contains(line) && refused.stdout.contains("GRANT SELECT ON svv_table_info"), refused.stdout + refused.stderr)
        try await source.execute("GRANT SELECT ON svv_table_info TO \(role)")
        let granted = try MongoshiftProcess.run(["check", "--config", cfg, "--min-oplog-window", "0s"])
        XCTAssertFalse(granted.stdout.contains(line), granted.stdout)
    }
}
