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

    /// The fixture table the Redshift way (through ops/dev-redshift): informational key, SUPER, no index, rows
    /// loaded with multi-row INSERTs (Redshift runs `generate_series` on the leader node only).
    public static func createRedshiftOrders(_ connection: PostgresConnection, table: String, rows: Int) async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint NOT NULL, customer_id integer NOT NULL, quantity smallint NOT NULL,
              amount decimal(12,4) NOT NULL, paid boolean NOT NULL, status char(8) NOT NULL, note varchar(200),
              order_date date NOT NULL, created_at timestamp NOT NULL, updated_at timestamp NOT NULL, attrs super,
              is_deleted boolean NOT NULL DEFAULT false, PRIMARY KEY (id))
            """)
        for start in stride(from: 1, through: rows, by: 1000) {
            let values = (start..<min(start + 1000, rows + 1)).map { redshiftOrderValues(id: $0, note: "row \($0)") }
            try await connection.execute("INSERT INTO public.\(table) (\(redshiftOrderColumns)) VALUES " + values.joined(separator: ", "))
        }
    }

    public static let redshiftOrderColumns = "id, customer_id, quantity, amount, paid, status, note, order_date, created_at, updated_at, attrs"

    /// One row of `createRedshiftOrders`'s table, stamped with the transaction's start (`SYSDATE`).
    public static func redshiftOrderValues(id: Int, note: String) -> String {
        "(\(id), \(id % 997 + 1), \(id % 50), \(id).1250, \(id % 2 == 0), 'new', '\(note)', '2024-03-03', SYSDATE, SYSDATE, JSON_PARSE('{\"i\": \(id)}'))"
    }

    /// A config file for one Redshift → Mongo stream over the fixture table. Returns its path.
    public static func writeConfig(directory: String, pg: String, mongo: String, database: String, table: String,
                                   extra: String = "", defaults: String = "", dialect: String = "postgres") throws -> String {
        let yaml = """
        state: \(directory)/state
        redshift:
          url: "\(pg)"
          dialect: \(dialect)
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
