import Foundation
import PostgresClient
import SQLiteStore

/// Test data and configs built from `fixtures/`.
public enum Fixtures {
    /// Creates the `orders` fixture (one column of every mapped type) as `table` with `rows` rows.
    public static func createOrders(_ connection: PostgresConnection, table: String, rows: Int) async throws {
        let path = (TestServers.repositoryRoot as NSString).appendingPathComponent("fixtures/orders.sql")
        var sql = try String(contentsOfFile: path, encoding: .utf8)
        sql = sql.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("\\") && !$0.hasPrefix("--") }
            .joined(separator: "\n")
            .replacingOccurrences(of: "public.orders", with: "public.\(table)")
            .replacingOccurrences(of: ":rows", with: String(rows))
        try await connection.execute(sql)
    }

    /// A config file for one Redshift → Mongo stream over the fixture table. Returns its path.
    public static func writeConfig(directory: String, pg: String, mongo: String, database: String, table: String,
                                   extra: String = "", defaults: String = "") throws -> String {
        let yaml = """
        state: \(directory)/state
        redshift:
          url: \(pg)
          dialect: postgres
        mongo:
          url: \(mongo)
          database: \(database)
        defaults: { poll_interval: 200ms\(defaults.isEmpty ? "" : ", " + defaults) }
        streams:
          - name: orders
            from: { table: public.\(table) }
            to: { collection: orders }
            key: [id]
            watermark: updated_at
            safety_lag: 1s
            deletes: { column: is_deleted }
            partitions: 4
        \(extra)
        """
        let path = (directory as NSString).appendingPathComponent("config.yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Reads one stream row of a state database without disturbing a running daemon.
    public static func streamCounters(stateDirectory: String, stream: String) -> (extracted: Int, applied: Int, phase: String)? {
        let path = (stateDirectory as NSString).appendingPathComponent("state.db")
        guard FileManager.default.fileExists(atPath: path),
              let db = try? SQLiteDatabase(path: path, readOnly: true),
              let row = try? db.query("SELECT rows_extracted, rows_applied, phase FROM streams WHERE name = ?", [.text(stream)]).first
        else { return nil }
        return (Int(row[0].int ?? 0), Int(row[1].int ?? 0), row[2].text ?? "")
    }
}
