import PostgresClient
import ShiftCore
import TestSupport
import XCTest

final class PostgresConnectionTests: XCTestCase {
    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(try TestServers.requirePostgres())
    }

    func testParameterisedQueryBindsValues() async throws {
        let c = try await connect()
        let rows = try await c.query("SELECT $1::int + 1, $2::text, $3::text IS NULL", ["41", "it's; DROP TABLE x --", nil])
        XCTAssertEqual(rows.rows, [["42", "it's; DROP TABLE x --", "t"]])
        XCTAssertEqual(rows.columns.map(\.name), ["?column?", "text", "?column?"])
    }

    func testStreamingDeliversEveryRowOneAtATime() async throws {
        let c = try await connect()
        final class Sum: @unchecked Sendable { var total = 0; var count = 0 }
        let sum = Sum()
        let n = try await c.stream("SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g") { row in
            sum.total += Int(row.string(0)!)!
            sum.count += 1
            XCTAssertEqual(row.length(1), 100)
        }
        XCTAssertEqual(n, 50000)
        XCTAssertEqual(sum.count, 50000)
        XCTAssertEqual(sum.total, 50000 * 50001 / 2)
    }

    /// `value(_:)` asks libpq whether a value is NULL only when it is empty: an empty string must stay an empty
    /// string, a NULL nil, and every other value its bytes.
    func testStreamedValuesTellEmptyStringsFromNulls() async throws {
        let c = try await connect()
        final class Seen: @unchecked Sendable { var values: [[String?]] = [] }
        let seen = Seen()
        _ = try await c.stream("SELECT '' AS empty, NULL::text AS null, 'x' AS x, ''::bytea AS no_bytes, NULL::int AS no_int") { row in
            seen.values.append((0..<row.columnCount).map { i in row.value(i).map { String(decoding: $0, as: UTF8.self) } })
            XCTAssertEqual((0..<row.columnCount).map { row.value($0) == nil }, (0..<row.columnCount).map { row.isNull($0) })
        }
        XCTAssertEqual(seen.values, [["", nil, "x", "\\x", nil]])
    }

    func testServerErrorCarriesSQLSTATEAndConnectionStaysUsable() async throws {
        let c = try await connect()
        do {
            try await c.query("SELECT * FROM no_such_table_here")
            XCTFail("expected an error")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42P01")
            XCTAssertEqual(error.code, .server)
            XCTAssertFalse(error.isTransient)
        }
        let again = try await c.query("SELECT 1").rows
        XCTAssertEqual(again, [["1"]])
    }

    func testCopyIn() async throws {
        let c = try await connect()
        let table = TestServers.uniqueName("copy")
        try await c.execute("CREATE TEMP TABLE \(table) (id int, name text)")
        final class Chunks: @unchecked Sendable { var left = 3 }
        let chunks = Chunks()
        let copied = try await c.copyIn("COPY \(table) FROM STDIN") {
            guard chunks.left > 0 else { return nil }
            chunks.left -= 1
            let base = chunks.left * 1000
            return Array((0..<1000).map { "\(base + $0)\tname \(base + $0)\n" }.joined().utf8)
        }
        XCTAssertEqual(copied, 3000)
        let counts = try await c.query("SELECT count(*), count(DISTINCT id) FROM \(table)").rows
        XCTAssertEqual(counts, [["3000", "3000"]])
    }

    func testTaskCancellationCancelsTheStatement() async throws {
        let c = try await connect()
        let task = Task { try await c.query("SELECT pg_sleep(30)") }
        try await Task.sleep(for: .milliseconds(300))
        let started = ContinuousClock.now
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("expected cancellation")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "57014")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
        let after = try await c.query("SELECT 2").rows
        XCTAssertEqual(after, [["2"]], "connection usable after cancel")
    }

    func testConnectionFailureIsRedacted() async throws {
        do {
            _ = try await PostgresConnection.connect("postgresql://etl:Canary-Pa55word@127.0.0.1:1/db", connectTimeoutSeconds: 2)
            XCTFail("expected failure")
        } catch let error as PostgresError {
            XCTAssertEqual(error.code, .connectionFailed)
            XCTAssertTrue(error.isTransient)
            XCTAssertFalse("\(error)".contains("Canary-Pa55word"), "\(error)")
        }
    }

    func testRedaction() {
        XCTAssertEqual(Redaction.redact("postgresql://etl:pw@host:5439/dev"), "postgresql://etl:***@host:5439/dev")
        XCTAssertEqual(Redaction.redact("host=h password='a b' user=u"), "host=h password=*** user=u")
        XCTAssertEqual(Redaction.redact("mongodb://u:p%40ss@h1,h2/?replicaSet=rs0&password=x"), "mongodb://u:***@h1,h2/?replicaSet=rs0&password=***")
        XCTAssertEqual(Redaction.redact("mongodb://h/"), "mongodb://h/")
        // Unencoded `?`, `@` and `/` in a password (libpq takes the first two), blanks around `=` (libpq takes them).
        XCTAssertEqual(Redaction.redact("postgresql://etl:pa?ss@host:5439/dev"), "postgresql://etl:***@host:5439/dev")
        XCTAssertEqual(Redaction.redact("postgresql://etl:p@ss@host:5439/dev?sslmode=require"), "postgresql://etl:***@host:5439/dev?sslmode=require")
        XCTAssertEqual(Redaction.redact("postgresql://etl:pa/ss@host/dev"), "postgresql://etl:***@host/dev")
        XCTAssertEqual(Redaction.redact("postgresql://host:5439/dev?application_name=a@b"), "postgresql://host:5439/dev?application_name=a@b")
        XCTAssertEqual(Redaction.redact("host=h password = s3cret user=u"), "host=h password=*** user=u")
        XCTAssertEqual(Redaction.redact("host=h password= 's 3' user=u"), "host=h password=*** user=u")
        XCTAssertEqual(Redaction.redact("host=h sslpassword=k user=password"), "host=h sslpassword=*** user=password")
    }
}
