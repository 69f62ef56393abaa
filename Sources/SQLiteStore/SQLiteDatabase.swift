internal import CSQLite
import Foundation

/// An error from SQLite: its result code and message, plus the statement.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var sql: String?
    public init(code: Int32, message: String, sql: String?) {
        self.code = code
        self.message = message
        self.sql = sql
    }
    public var description: String { "sqlite error \(code): \(message)" + (sql.map { " [\($0.prefix(120))]" } ?? "") }
    /// SQLITE_BUSY / SQLITE_LOCKED: another process holds the lock; retry.
    public var isBusy: Bool { code & 0xFF == 5 || code & 0xFF == 6 }
    /// SQLITE_CORRUPT / SQLITE_NOTADB: the file is damaged or not a database.
    public var isCorrupt: Bool { code & 0xFF == 11 || code & 0xFF == 26 }
    /// SQLITE_FULL: the disk (or the database's size limit) is full.
    public var isFull: Bool { code & 0xFF == 13 }
}

/// A bindable / readable SQLite value.
public enum SQLiteValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var int: Int64? { if case .integer(let v) = self { return v }; return nil }
    public var text: String? { if case .text(let v) = self { return v }; return nil }
    public var blob: [UInt8]? { if case .blob(let v) = self { return v }; return nil }
}

public typealias SQLiteRow = [SQLiteValue]

/// One SQLite connection (WAL mode, busy timeout). Not thread-safe by itself: the owner serialises calls
/// (the state store runs them on its own I/O thread).
///
/// `@unchecked Sendable`: `db` is only used by one thread at a time, as the owner guarantees.
public final class SQLiteDatabase: @unchecked Sendable {
    private let db: OpaquePointer
    public let path: String

    public init(path: String, readOnly: Bool = false) throws {
        var handle: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: rc, message: message, sql: nil)
        }
        db = handle
        self.path = path
        sqlite3_busy_timeout(db, 10_000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(db) }

    /// Runs statements without results (several may be separated by `;`).
    public func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, sql: sql)
        }
    }

    /// Runs one statement with bound values and returns all rows.
    @discardableResult
    public func query(_ sql: String, _ params: [SQLiteValue] = []) throws -> [SQLiteRow] {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(db, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql) }
        defer { sqlite3_finalize(statement) }
        for (i, value) in params.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .real(let v): rc = sqlite3_bind_double(statement, index, v)
            case .text(let v): rc = sqlite3_bind_text(statement, index, v, -1, SQLITE_TRANSIENT)
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), SQLITE_TRANSIENT) }
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
        var rows: [SQLiteRow] = []
        while true {
            rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            let columns = sqlite3_column_count(statement)
            rows.append((0..<columns).map { column(statement, $0) })
        }
        return rows
    }

    public var changes: Int { Int(sqlite3_changes(db)) }

    /// Runs `body` in a transaction (BEGIN IMMEDIATE, so writers queue instead of failing mid-transaction).
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func column(_ statement: OpaquePointer, _ i: Int32) -> SQLiteValue {
        switch sqlite3_column_type(statement, i) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, i))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, i))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, i)))
        case SQLITE_BLOB:
            let n = Int(sqlite3_column_bytes(statement, i))
            guard n > 0, let p = sqlite3_column_blob(statement, i) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
        default: return .null
        }
    }

    private func error(_ rc: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(db)), sql: sql)
    }
}

// SQLite's "copy the bytes now" destructor sentinel, which Swift cannot import as a macro.
private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
