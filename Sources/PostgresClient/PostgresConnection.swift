internal import CLibPQ
import Foundation
import ShiftCore

/// The columns of a result, as the server described them.
public struct PostgresColumn: Sendable, Hashable {
    public var name: String
    public var typeOID: UInt32
    public var typeModifier: Int32
    public init(name: String, typeOID: UInt32, typeModifier: Int32 = -1) {
        self.name = name
        self.typeOID = typeOID
        self.typeModifier = typeModifier
    }
}

/// A small, fully materialised result (catalog queries, counts). Bulk reads use `stream`.
public struct PostgresRows: Sendable {
    public var columns: [PostgresColumn]
    public var rows: [[String?]]
    public var commandTag: String
    public var affectedRows: Int { Int(commandTag.split(separator: " ").last ?? "") ?? 0 }
}

/// A read-only view of one row in text format, valid only inside the row callback.
public struct PostgresRowView: ~Copyable {
    fileprivate let result: OpaquePointer
    public let columnCount: Int

    public func isNull(_ column: Int) -> Bool { PQgetisnull(result, 0, Int32(column)) == 1 }
    public func length(_ column: Int) -> Int { Int(PQgetlength(result, 0, Int32(column))) }
    /// The raw text bytes of a value (not NUL-terminated in the buffer's count).
    public func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8> {
        let pointer = UnsafeRawPointer(PQgetvalue(result, 0, Int32(column))!).assumingMemoryBound(to: UInt8.self)
        return UnsafeBufferPointer(start: pointer, count: length(column))
    }
    public func string(_ column: Int) -> String? {
        isNull(column) ? nil : String(decoding: bytes(column), as: UTF8.self)
    }
    /// The value's text bytes, nil for NULL. Two libpq calls for a non-empty value (a NULL has length 0, so only
    /// an empty one asks whether it is NULL) instead of three: this runs for every field of every extracted row.
    public func value(_ column: Int) -> UnsafeBufferPointer<UInt8>? {
        let c = Int32(column)
        let count = Int(PQgetlength(result, 0, c))
        if count == 0 && PQgetisnull(result, 0, c) == 1 { return nil }
        return UnsafeBufferPointer(start: UnsafeRawPointer(PQgetvalue(result, 0, c)!).assumingMemoryBound(to: UInt8.self), count: count)
    }
}

/// One libpq connection. Every libpq call runs on the connection's own thread; calls are serialised.
/// A task cancelled while a statement runs sends the server a cancel request (PQcancel).
///
/// `@unchecked Sendable`: `conn` is only used on `io`'s thread (and `cancelHandle` through libpq's thread-safe
/// PQcancel); `deinit` runs when nothing else can reach it.
public final class PostgresConnection: @unchecked Sendable {
    private let io: IOThread
    private let conn: OpaquePointer
    private let cancelHandle: OpaquePointer?
    /// The conninfo with its password removed; safe to log.
    public let redactedConninfo: String

    private init(io: IOThread, conn: OpaquePointer, redacted: String) {
        self.io = io
        self.conn = conn
        self.cancelHandle = PQgetCancel(conn)
        self.redactedConninfo = redacted
    }

    deinit {
        if let cancelHandle { PQfreeCancel(cancelHandle) }
        let conn = UnsafeSendable(self.conn)
        let finish: @Sendable () -> Void = { PQfinish(conn.value) }
        if !io.submit(finish) { finish() }
        io.shutdown()
    }

    /// What every session is set to, whatever the server's or the login's defaults: timestamptz text in UTC, dates
    /// in ISO form (what the decoders read), and floats with the digits that read back exactly — Redshift's
    /// default `extra_float_digits` 0 prints 15 significant digits of a DOUBLE and 6 of a REAL; 2 is the most it
    /// allows (17 and 8), and PostgreSQL 12 and later print the shortest exact form for any value above 0.
    static let sessionSettings = ["SET TIME ZONE 'UTC'", "SET extra_float_digits = 2", "SET DateStyle = 'ISO, MDY'"]

    /// Opens a connection (libpq URI or key=value conninfo), set up as `sessionSettings` says.
    public static func connect(_ conninfo: String, applicationName: String = "mongoshift",
                               connectTimeoutSeconds: Int = 10) async throws -> PostgresConnection {
        let io = IOThread(name: "libpq")
        let redacted = Redaction.redact(conninfo)
        do {
            let conn = try await io.run { try open(conninfo, applicationName: applicationName, connectTimeoutSeconds: connectTimeoutSeconds) }
            let connection = PostgresConnection(io: io, conn: conn.value, redacted: redacted)
            for setting in sessionSettings { _ = try await connection.execute(setting) }
            return connection
        } catch {
            io.shutdown()
            throw error
        }
    }

    /// True while libpq believes the connection is usable.
    public var isHealthy: Bool {
        get async { (try? await io.run { PQstatus(self.conn) == CONNECTION_OK }) ?? false }
    }

    // MARK: - statements

    /// Runs one statement with bound text parameters and returns the whole (small) result.
    @discardableResult
    public func query(_ sql: String, _ params: [String?] = []) async throws -> PostgresRows {
        try await query(sql, TextParameters(params))
    }

    /// `query` with the parameters in `range` of `params` (default: all of them).
    @discardableResult
    public func query(_ sql: String, _ params: TextParameters, range: Range<Int>? = nil) async throws -> PostgresRows {
        try await cancellable {
            try await self.io.run { try self.collect(sql, params, range ?? 0..<params.count) }
        }
    }

    /// `isHealthy` for callers on a dedicated thread of their own (see `queryBlocking`).
    public var isHealthyBlocking: Bool {
        (try? io.runBlocking { PQstatus(self.conn) == CONNECTION_OK }) ?? false
    }

    /// `query` for callers on a dedicated thread of their own (the PostgreSQL state store): blocks that thread.
    @discardableResult
    public func queryBlocking(_ sql: String, _ params: [String?] = []) throws -> PostgresRows {
        try io.runBlocking { try self.collect(sql, TextParameters(params), 0..<params.count) }
    }

    /// libpq's connect, on the calling (I/O) thread.
    private static func open(_ conninfo: String, applicationName: String, connectTimeoutSeconds: Int) throws -> UnsafeSendable<OpaquePointer> {
        let redacted = Redaction.redact(conninfo)
        // TCP keepalives and a user timeout, so a peer that vanished (a failover, a NAT that dropped the flow during
        // a long UNLOAD) fails the call within about a minute instead of the OS's two hours. Before `dbname`: a
        // value the URL gives wins.
        let keys = ["keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                    "dbname", "application_name", "connect_timeout", "client_encoding"]
        let values = ["1", "30", "10", "3", "60000", conninfo, applicationName, String(connectTimeoutSeconds), "UTF8"]
        let conn = withCStrings(keys) { k in
            withCStrings(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn else { throw PostgresError(code: .connectionFailed, message: "out of memory") }
        if PQstatus(conn) != CONNECTION_OK {
            let message = Self.cleanMessage(PQerrorMessage(conn))
            PQfinish(conn)
            throw PostgresError(code: .connectionFailed, message: "\(Redaction.redact(message)) [\(redacted)]")
        }
        // A SQL_ASCII database stores bytes in no particular encoding, and the server refuses to convert them to
        // UTF-8 (failing the whole query). Take them as they are: values that are not UTF-8 are then refused one
        // row at a time (dead-lettered) instead of stopping the stream.
        if let encoding = PQparameterStatus(conn, "server_encoding"), String(cString: encoding) == "SQL_ASCII" {
            _ = PQsetClientEncoding(conn, "SQL_ASCII")
        }
        // Server NOTICEs ("relation already exists, skipping") would go straight to stderr, past the logger.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        return UnsafeSendable(conn)
    }

    /// Opens a connection from a dedicated thread (blocks it; see `queryBlocking`).
    public static func connectBlocking(_ conninfo: String, applicationName: String = "mongoshift",
                                       connectTimeoutSeconds: Int = 10) throws -> PostgresConnection {
        let io = IOThread(name: "libpq")
        do {
            let conn = try io.runBlocking { try open(conninfo, applicationName: applicationName, connectTimeoutSeconds: connectTimeoutSeconds) }
            let connection = PostgresConnection(io: io, conn: conn.value, redacted: Redaction.redact(conninfo))
            for setting in sessionSettings { try connection.queryBlocking(setting) }
            return connection
        } catch {
            io.shutdown()
            throw error
        }
    }

    /// Sends a statement and gathers its whole result; runs on the connection's thread.
    private func collect(_ sql: String, _ params: TextParameters, _ range: Range<Int>) throws -> PostgresRows {
        try sendQuery(sql, params, range, singleRow: false)
        var out = PostgresRows(columns: [], rows: [], commandTag: "")
        var failure: PostgresError?
        while let result = PQgetResult(conn) {
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK {
                out.columns = Self.columns(result)
                let rows = Int(PQntuples(result)), cols = Int(PQnfields(result))
                out.rows.reserveCapacity(rows)
                for r in 0..<rows {
                    out.rows.append((0..<cols).map { c in
                        PQgetisnull(result, Int32(r), Int32(c)) == 1 ? nil : String(cString: PQgetvalue(result, Int32(r), Int32(c)))
                    })
                }
                out.commandTag = String(cString: PQcmdStatus(result))
            } else if failure == nil {
                failure = error(from: result, sql: sql)
            }
        }
        if let failure { throw failure }
        try checkConnection(sql)
        return out
    }

    /// Runs statements without parameters (may contain several separated by `;`).
    @discardableResult
    public func execute(_ sql: String) async throws -> String {
        try await cancellable {
            try await self.io.run {
                guard PQsendQuery(self.conn, sql) == 1 else { throw self.connectionError(sql) }
                var tag = ""
                var failure: PostgresError?
                while let result = PQgetResult(self.conn) {
                    defer { PQclear(result) }
                    let status = PQresultStatus(result)
                    if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
                        tag = String(cString: PQcmdStatus(result))
                    } else if failure == nil {
                        failure = self.error(from: result, sql: sql)
                    }
                }
                if let failure { throw failure }
                try self.checkConnection(sql)
                return tag
            }
        }
    }

    /// Streams the rows of a query in single-row mode: memory stays one row deep whatever the result size.
    /// `onRow` runs on the connection's thread; it gets the column descriptions first.
    /// Returns the number of rows.
    @discardableResult
    public func stream(_ sql: String, _ params: [String?] = [],
                       onColumns: @escaping @Sendable ([PostgresColumn]) throws -> Void = { _ in },
                       onRow: @escaping @Sendable (borrowing PostgresRowView) throws -> Void) async throws -> Int {
        try await cancellable {
            try await self.io.run {
                try self.sendQuery(sql, TextParameters(params), 0..<params.count, singleRow: true)
                var count = 0
                var failure: Error?
                var sawColumns = false
                while let result = PQgetResult(self.conn) {
                    defer { PQclear(result) }
                    let status = PQresultStatus(result)
                    if failure != nil { continue }  // drain the rest so the connection stays usable
                    if status == PGRES_SINGLE_TUPLE {
                        if !sawColumns {
                            sawColumns = true
                            do { try onColumns(Self.columns(result)) } catch { failure = error; continue }
                        }
                        do {
                            try onRow(PostgresRowView(result: result, columnCount: Int(PQnfields(result))))
                            count += 1
                        } catch {
                            failure = error
                            _ = PQrequestCancel(self.conn)
                        }
                    } else if status == PGRES_TUPLES_OK {
                        if !sawColumns {
                            sawColumns = true
                            do { try onColumns(Self.columns(result)) } catch { failure = error }
                        }
                    } else if status != PGRES_COMMAND_OK {
                        failure = self.error(from: result, sql: sql)
                    }
                }
                if let failure { throw failure }
                try self.checkConnection(sql)
                return count
            }
        }
    }

    /// `COPY ... FROM STDIN`: sends the chunks `next` yields until it returns nil. Returns rows copied.
    @discardableResult
    public func copyIn(_ sql: String, next: @escaping @Sendable () throws -> [UInt8]?) async throws -> Int {
        try await cancellable {
            try await self.io.run {
                guard PQsendQuery(self.conn, sql) == 1 else { throw self.connectionError(sql) }
                guard let first = PQgetResult(self.conn) else { throw self.connectionError(sql) }
                let status = PQresultStatus(first)
                if status != PGRES_COPY_IN {
                    let err = self.error(from: first, sql: sql)
                    PQclear(first)
                    while let r = PQgetResult(self.conn) { PQclear(r) }
                    throw err
                }
                PQclear(first)
                var producerError: Error?
                do {
                    while let chunk = try next() {
                        let sent = chunk.withUnsafeBufferPointer { buf in
                            buf.withMemoryRebound(to: CChar.self) { PQputCopyData(self.conn, $0.baseAddress, Int32($0.count)) }
                        }
                        if sent != 1 { throw self.connectionError(sql) }
                    }
                } catch { producerError = error }
                let endMessage: String? = producerError.map { "\($0)" }
                guard PQputCopyEnd(self.conn, endMessage) == 1 else { throw self.connectionError(sql) }
                var tag = ""
                var failure: PostgresError?
                while let result = PQgetResult(self.conn) {
                    defer { PQclear(result) }
                    if PQresultStatus(result) == PGRES_COMMAND_OK {
                        tag = String(cString: PQcmdStatus(result))
                    } else if failure == nil {
                        failure = self.error(from: result, sql: sql)
                    }
                }
                if let producerError { throw producerError }
                if let failure { throw PostgresError(code: .copyFailed, sqlState: failure.sqlState, message: failure.message, detail: failure.detail, query: sql) }
                return Int(tag.split(separator: " ").last ?? "") ?? 0
            }
        }
    }

    /// Asks the server to cancel whatever this connection is running. Safe from any thread.
    public func cancel() {
        guard let cancelHandle else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancelHandle, &buffer, Int32(buffer.count))
    }

    // MARK: - helpers (connection thread only)

    private func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try Task.checkCancellation()
        return try await withTaskCancellationHandler(operation: body, onCancel: { self.cancel() })
    }

    private func sendQuery(_ sql: String, _ params: TextParameters, _ range: Range<Int>, singleRow: Bool) throws {
        let ok: Int32 = params.withCPointers(range) { values in
            PQsendQueryParams(conn, sql, Int32(range.count), nil, values, nil, nil, 0)
        }
        guard ok == 1 else { throw connectionError(sql) }
        if singleRow { _ = PQsetSingleRowMode(conn) }
    }

    private func checkConnection(_ sql: String) throws {
        if PQstatus(conn) != CONNECTION_OK { throw connectionError(sql) }
    }

    private func connectionError(_ sql: String?) -> PostgresError {
        let message = Self.cleanMessage(PQerrorMessage(conn))
        let lost = PQstatus(conn) != CONNECTION_OK
        return PostgresError(code: lost ? .connectionLost : .unexpectedResult, message: Redaction.redact(message), query: sql)
    }

    private func error(from result: OpaquePointer, sql: String) -> PostgresError {
        func field(_ code: UInt8) -> String? {
            guard let value = PQresultErrorField(result, Int32(code)) else { return nil }
            return String(cString: value)
        }
        let state = field(UInt8(ascii: "C"))
        let message = field(UInt8(ascii: "M")) ?? Self.cleanMessage(PQresultErrorMessage(result))
        if PQstatus(conn) != CONNECTION_OK {
            return PostgresError(code: .connectionLost, sqlState: state, message: message, query: sql)
        }
        let code: PostgresError.Code = state == "57014" ? .cancelled : .server
        return PostgresError(code: code, sqlState: state, message: message, detail: field(UInt8(ascii: "D")), query: sql)
    }

    private static func columns(_ result: OpaquePointer) -> [PostgresColumn] {
        (0..<PQnfields(result)).map {
            PostgresColumn(name: String(cString: PQfname(result, $0)), typeOID: PQftype(result, $0), typeModifier: PQfmod(result, $0))
        }
    }

    private static func cleanMessage(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "unknown libpq error" }
        return String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Carries a value that is only ever touched on one thread across an `IOThread.run` boundary.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafePointer<CChar>?] = strings.map { UnsafePointer(strdup($0)) }
    pointers.append(nil)
    defer { pointers.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
