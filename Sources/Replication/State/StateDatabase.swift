import Foundation
import PostgresClient
import SQLiteStore

/// The SQL engine under the state store: SQLite for one machine, PostgreSQL when several workers share streams.
/// The store speaks one SQL subset to both (`?` placeholders, `ON CONFLICT`, `RETURNING`); only the DDL's type
/// names and row locking differ, by `dialect`. Calls run on the store's own I/O thread, one at a time.
protocol StateDatabase: AnyObject, Sendable {
    var dialect: StateDialect { get }
    func execute(_ sql: String) throws
    @discardableResult
    func query(_ sql: String, _ params: [SQLiteValue]) throws -> [SQLiteRow]
    func transaction<T>(_ body: () throws -> T) throws -> T
}

extension StateDatabase {
    @discardableResult
    func query(_ sql: String) throws -> [SQLiteRow] { try query(sql, []) }
}

enum StateDialect: Sendable {
    case sqlite, postgres

    /// Column types: SQLite's affinities, PostgreSQL's exact types (REAL is float4 there; counts exceed int4).
    var blob: String { self == .sqlite ? "BLOB" : "BYTEA" }
    var real: String { self == .sqlite ? "REAL" : "DOUBLE PRECISION" }
    var integer: String { self == .sqlite ? "INTEGER" : "BIGINT" }
}

extension SQLiteDatabase: StateDatabase {
    var dialect: StateDialect { .sqlite }
}

/// The state store's tables in a PostgreSQL schema shared by every worker. Values travel as text: bytea in hex,
/// numbers in their shortest round-trip form; results come back typed by column OID.
///
/// `@unchecked Sendable`: the connection is used only from the store's I/O thread (calls are serialised there).
final class PostgresStateDatabase: StateDatabase, @unchecked Sendable {
    let connection: PostgresConnection
    let dialect = StateDialect.postgres
    private var lockKey: String?

    /// Ends the start-up critical section (see `init`).
    func migrated() throws {
        if let key = lockKey { try connection.queryBlocking("SELECT pg_advisory_unlock(hashtext($1))", [key]) }
        lockKey = nil
    }

    init(url: String, schema: String) throws {
        connection = try PostgresConnection.connectBlocking(url, applicationName: "mongoshift-state")
        let quoted = SQL.identifier(schema)
        // Workers starting together would race creating the schema and tables: one at a time (released by
        // `migrated()` once the store's tables are current).
        try connection.queryBlocking("SELECT pg_advisory_lock(hashtext($1))", [schema])
        lockKey = schema
        try connection.queryBlocking("CREATE SCHEMA IF NOT EXISTS \(quoted)")
        try connection.queryBlocking("SET search_path TO \(quoted)")
    }

    func execute(_ sql: String) throws {
        for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
            try connection.queryBlocking(statement)
        }
    }

    @discardableResult
    func query(_ sql: String, _ params: [SQLiteValue]) throws -> [SQLiteRow] {
        let rows = try connection.queryBlocking(Self.numbered(sql), params.map(Self.text))
        return rows.rows.map { row in
            zip(row, rows.columns).map { value, column in Self.value(value, oid: column.typeOID) }
        }
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try connection.queryBlocking("BEGIN")
        do {
            let result = try body()
            try connection.queryBlocking("COMMIT")
            return result
        } catch {
            _ = try? connection.queryBlocking("ROLLBACK")
            throw error
        }
    }

    /// `?` → `$1`, `$2`, … (the store's SQL holds no `?` inside literals).
    static func numbered(_ sql: String) -> String {
        var out = ""
        var n = 0
        for c in sql {
            if c == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(c)
            }
        }
        return out
    }

    static func text(_ value: SQLiteValue) -> String? {
        switch value {
        case .null: nil
        case .integer(let i): String(i)
        case .real(let d): "\(d)"
        case .text(let s): s
        case .blob(let b): "\\x" + b.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        }
    }

    static func value(_ text: String?, oid: UInt32) -> SQLiteValue {
        guard let text else { return .null }
        switch oid {
        case 20, 21, 23: return Int64(text).map(SQLiteValue.integer) ?? .text(text)
        case 700, 701: return Double(text).map(SQLiteValue.real) ?? .text(text)
        case 1700: return Int64(text).map(SQLiteValue.integer) ?? Double(text).map(SQLiteValue.real) ?? .text(text)
        case 17: return .blob(hexBytes(text))
        default: return .text(text)
        }
    }

    /// bytea's hex output (`\x0a1b…`) to bytes.
    static func hexBytes(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8.dropFirst(2))
        bytes.reserveCapacity(utf8.count / 2)
        func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
        var i = 0
        while i + 1 < utf8.count {
            bytes.append(nibble(utf8[i]) << 4 | nibble(utf8[i + 1]))
            i += 2
        }
        return bytes
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
