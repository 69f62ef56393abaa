import Foundation
import PostgresClient
import SQLiteStore

/// A value bound to or read from the state store's tables, the same for both engines.
public enum StateValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    var int: Int64? { if case .integer(let v) = self { return v }; return nil }
    var text: String? { if case .text(let v) = self { return v }; return nil }
    var blob: [UInt8]? { if case .blob(let v) = self { return v }; return nil }
    var real: Double? {
        switch self {
        case .real(let d): d
        case .integer(let i): Double(i)
        default: nil
        }
    }
}

public typealias StateRow = [StateValue]

/// The SQL engine under the state store: SQLite for one machine, PostgreSQL when several workers share streams.
/// The store speaks one SQL subset to both (`?` placeholders, `ON CONFLICT`, `RETURNING`); only the DDL's type
/// names and row locking differ, by `dialect`. Calls run on the store's own I/O thread, one at a time, and every
/// engine error comes out as a `StateStoreError`.
protocol StateDatabase: AnyObject, Sendable {
    var dialect: StateDialect { get }
    func execute(_ sql: String) throws(StateStoreError)
    @discardableResult
    func query(_ sql: String, _ params: [StateValue]) throws(StateStoreError) -> [StateRow]
    func transaction<T>(_ body: () throws -> T) throws -> T
}

extension StateDatabase {
    @discardableResult
    func query(_ sql: String) throws(StateStoreError) -> [StateRow] { try query(sql, []) }
}

enum StateDialect: Sendable {
    case sqlite, postgres

    /// Column types: SQLite's affinities, PostgreSQL's exact types (REAL is float4 there; counts exceed int4).
    var blob: String { self == .sqlite ? "BLOB" : "BYTEA" }
    var real: String { self == .sqlite ? "REAL" : "DOUBLE PRECISION" }
    var integer: String { self == .sqlite ? "INTEGER" : "BIGINT" }
    /// Row lock for a read that decides a write in the same transaction (SQLite's BEGIN IMMEDIATE serialises).
    var forUpdate: String { self == .sqlite ? "" : " FOR UPDATE" }
}

/// The SQLite engine: the wrapper's connection, its values and errors translated.
///
/// `@unchecked Sendable`: used only on the store's I/O thread.
final class SQLiteStateDatabase: StateDatabase, @unchecked Sendable {
    let dialect = StateDialect.sqlite
    private let db: SQLiteDatabase
    private let path: String

    init(path: String, readOnly: Bool) throws(StateStoreError) {
        self.path = path
        do { db = try SQLiteDatabase(path: path, readOnly: readOnly) } catch { throw Self.translate(error) }
    }

    func execute(_ sql: String) throws(StateStoreError) {
        do { try db.execute(sql) } catch { throw Self.translate(error) }
    }

    func query(_ sql: String, _ params: [StateValue]) throws(StateStoreError) -> [StateRow] {
        do {
            return try db.query(sql, params.map(Self.sqlite)).map { $0.map(Self.neutral) }
        } catch {
            throw Self.translate(error)
        }
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        do { return try db.transaction(body) } catch let error as SQLiteError { throw Self.translate(error) }
    }

    static func sqlite(_ value: StateValue) -> SQLiteValue {
        switch value {
        case .null: .null
        case .integer(let i): .integer(i)
        case .real(let d): .real(d)
        case .text(let s): .text(s)
        case .blob(let b): .blob(b)
        }
    }

    static func neutral(_ value: SQLiteValue) -> StateValue {
        switch value {
        case .null: .null
        case .integer(let i): .integer(i)
        case .real(let d): .real(d)
        case .text(let s): .text(s)
        case .blob(let b): .blob(b)
        }
    }

    static func translate(_ error: Error) -> StateStoreError {
        guard let error = error as? SQLiteError else { return StateStoreError(.engine, "\(error)") }
        let code: StateStoreError.Code = error.isBusy ? .busy : error.isCorrupt ? .corrupt : error.isFull ? .noSpace : .engine
        return StateStoreError(code, "sqlite \(error.code): \(error.message)", statement: error.sql)
    }
}

/// The state store's tables in a PostgreSQL schema shared by every worker. Values travel as text: bytea in hex,
/// numbers in their shortest round-trip form; results come back typed by column OID.
///
/// A lost session (a restart, a failover) is opened again by the next call outside a transaction: the call that
/// met the loss fails as `.unavailable`, which callers retry.
///
/// `@unchecked Sendable`: the connection is used only from the store's I/O thread (calls are serialised there).
final class PostgresStateDatabase: StateDatabase, @unchecked Sendable {
    private var session: PostgresConnection
    private let url: String
    private let schema: String
    let dialect = StateDialect.postgres
    private var lockKey: String?
    private var inTransaction = false

    /// The session, opened again first if it was lost — never inside a transaction, which died with it.
    private var connection: PostgresConnection {
        get throws(StateStoreError) {
            if !inTransaction && !session.isHealthyBlocking {
                session = try Self.open(url, schema: schema)
            }
            return session
        }
    }

    private static func open(_ url: String, schema: String) throws(StateStoreError) -> PostgresConnection {
        let session = try run { try PostgresConnection.connectBlocking(url, applicationName: "mongoshift-state") }
        _ = try run { try session.queryBlocking("SET search_path TO \(SQL.identifier(schema))") }
        return session
    }

    /// Ends the start-up critical section (see `init`).
    func migrated() throws(StateStoreError) {
        if let key = lockKey { _ = try run { try session.queryBlocking("SELECT pg_advisory_unlock(hashtext($1))", [key]) } }
        lockKey = nil
    }

    init(url: String, schema: String, createSchema: Bool = true) throws(StateStoreError) {
        self.url = url
        self.schema = schema
        session = try Self.run { try PostgresConnection.connectBlocking(url, applicationName: "mongoshift-state") }
        let quoted = SQL.identifier(schema)
        // Workers starting together would race creating the schema and tables: one at a time (released by
        // `migrated()` once the store's tables are current).
        _ = try run { try session.queryBlocking("SELECT pg_advisory_lock(hashtext($1))", [schema]) }
        lockKey = schema
        if createSchema { _ = try run { try session.queryBlocking("CREATE SCHEMA IF NOT EXISTS \(quoted)") } }
        _ = try run { try session.queryBlocking("SET search_path TO \(quoted)") }
    }

    func execute(_ sql: String) throws(StateStoreError) {
        for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
            let connection = try connection
            _ = try run { try connection.queryBlocking(statement) }
        }
    }

    func query(_ sql: String, _ params: [StateValue]) throws(StateStoreError) -> [StateRow] {
        let connection = try connection
        let rows = try run { try connection.queryBlocking(Self.numbered(sql), params.map(Self.text)) }
        return rows.rows.map { row in
            zip(row, rows.columns).map { value, column in Self.value(value, oid: column.typeOID) }
        }
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        inTransaction = true
        defer { inTransaction = false }
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            _ = try? execute("ROLLBACK")
            throw error
        }
    }

    private func run<T>(_ body: () throws -> T) throws(StateStoreError) -> T { try Self.run(body) }

    private static func run<T>(_ body: () throws -> T) throws(StateStoreError) -> T {
        do {
            return try body()
        } catch let error as PostgresError {
            throw StateStoreError(error.isTransient ? .unavailable : .engine, "\(error)", statement: error.query)
        } catch {
            throw StateStoreError(.engine, "\(error)")
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

    static func text(_ value: StateValue) -> String? {
        switch value {
        case .null: nil
        case .integer(let i): String(i)
        case .real(let d): "\(d)"
        case .text(let s): s
        case .blob(let b): "\\x" + b.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        }
    }

    static func value(_ text: String?, oid: UInt32) -> StateValue {
        guard let text else { return .null }
        switch oid {
        case 20, 21, 23: return Int64(text).map(StateValue.integer) ?? .text(text)
        case 700, 701: return Double(text).map(StateValue.real) ?? .text(text)
        case 1700: return Int64(text).map(StateValue.integer) ?? Double(text).map(StateValue.real) ?? .text(text)
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
