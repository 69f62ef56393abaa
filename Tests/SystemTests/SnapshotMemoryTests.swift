import Foundation
import PostgresClient
import TestSupport
import XCTest

/// Memory is bounded by configuration, not by table size. Measured on the extract → spool path
/// (`--spool-only`): the dev Mongo server keeps everything in Python objects and cannot hold 500,000 documents
/// in CI; the apply path holds one segment at a time by construction.
final class SnapshotMemoryTests: XCTestCase {
    func peakRSS(rows: Int, pg: String, connection: PostgresConnection) async throws -> Int {
        let table = TestServers.uniqueName("rss")
        let directory = try TestServers.temporaryDirectory("rss")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Fixtures.createOrders(connection, table: table, rows: rows)
        defer { Task { _ = try? await connection.execute("DROP TABLE IF EXISTS public.\(table)") } }
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: "mongodb://127.0.0.1:1/", database: "unused", table: table)
        let result = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(result.status, 0, result.stderr)
        let match = result.stdout.firstMatch(of: /peak RSS (\d+) MiB/)
        return Int(try XCTUnwrap(match, result.stdout).1)!
    }

    func testPeakRSSIsFlatFrom50kTo500kRows() async throws {
        let pg = try TestServers.requirePostgres()
        let connection = try await PostgresConnection.connect(pg)
        var small = try await peakRSS(rows: 50_000, pg: pg, connection: connection)
        var large = try await peakRSS(rows: 500_000, pg: pg, connection: connection)
        // Peak RSS of identical runs varies by ~15 % (allocator and scheduling noise): when the first pair looks
        // like growth, a second pair decides — the larger small run against the smaller large run. Growth with
        // the table (10× the rows) would show in both.
        if Double(large) >= Double(small) * 1.2 {
            small = max(small, try await peakRSS(rows: 50_000, pg: pg, connection: connection))
            large = min(large, try await peakRSS(rows: 500_000, pg: pg, connection: connection))
        }
        print("peak RSS of snapshot: 50,000 rows \(small) MiB, 500,000 rows \(large) MiB")
        XCTAssertLessThan(Double(large), Double(small) * 1.2, "peak RSS must not grow with the table")
    }
}
