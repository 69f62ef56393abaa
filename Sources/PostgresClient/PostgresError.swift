import ShiftCore

/// An error from PostgreSQL/Redshift or from libpq, with the server's SQLSTATE when there is one.
/// Its description never contains a password (connection strings are redacted before they get here).
public struct PostgresError: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public static let connectionFailed = Code(raw: "connection failed")
        public static let connectionLost = Code(raw: "connection lost")
        public static let server = Code(raw: "server error")
        public static let copyFailed = Code(raw: "COPY failed")
        public static let cancelled = Code(raw: "cancelled")
        public static let unexpectedResult = Code(raw: "unexpected result")
        public var description: String { raw }
    }

    public var code: Code
    /// Five-character SQLSTATE (`23505`, `57014`, ...) when the server sent one.
    public var sqlState: String?
    public var message: String
    public var detail: String?
    /// The statement, shortened; values are bound separately and never appear here.
    public var query: String?

    public init(code: Code, sqlState: String? = nil, message: String, detail: String? = nil, query: String? = nil) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.query = query.map { Redaction.redactSQL($0) }.map { $0.count > 200 ? String($0.prefix(200)) + "…" : $0 }
    }

    /// Worth retrying on a fresh connection: connection trouble, admin shutdown/cancel, serialization failures,
    /// deadlocks, too many connections, statement timeouts (Redshift WLM also cancels with 57014), Redshift's 1023.
    public var isTransient: Bool {
        if code == .connectionFailed {
            // Refusals that no retry will change: credentials, TLS requirements, unknown database or role.
            let permanent = ["password authentication failed", "SSL", "does not exist", "no pg_hba.conf entry", "certificate"]
            return !permanent.contains { message.contains($0) }
        }
        if code == .connectionLost { return true }
        guard let state = sqlState else { return false }
        return state.hasPrefix("08") || state.hasPrefix("57P") || state.hasPrefix("53")
            || ["40001", "40P01", "57014", "55P03"].contains(state)
            || isRedshiftSerializationConflict || isConcurrentCreateRace || isRedshiftS3Throttling
    }

    /// S3 refused Redshift's own requests inside a COPY or UNLOAD with an error S3 says to retry (503 SlowDown,
    /// 500 InternalError, RequestTimeout): Redshift reports it as `S3ServiceException:…,Status 503,Error SlowDown`.
    public var isRedshiftS3Throttling: Bool {
        guard sqlState == "XX000", message.contains("S3ServiceException") else { return false }
        return ["Status 500", "Status 503", "SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable"].contains { message.contains($0) }
    }

    /// Two sessions ran the same `CREATE … IF NOT EXISTS` at once (streams sharing a schema start together):
    /// the loser sees the catalog's unique index or "already exists"; run again, the statement finds the object.
    public var isConcurrentCreateRace: Bool {
        guard let state = sqlState else { return false }
        if ["42P07", "42P06", "42710"].contains(state) { return query?.uppercased().contains("IF NOT EXISTS") ?? false }
        return state == "23505" && ["pg_type_typname_nsp_index", "pg_namespace_nspname_index", "pg_class_relname_nsp_index"]
            .contains { message.contains($0) || (detail ?? "").contains($0) }
    }

    /// Redshift's `ERROR: 1023 … Serializable isolation violation` (SQLSTATE XX000): another transaction
    /// committed first; the transaction can simply run again.
    public var isRedshiftSerializationConflict: Bool {
        sqlState == "XX000" && (message.hasPrefix("1023") || message.contains("Serializable isolation violation"))
    }

    public var description: String {
        var text = "postgres \(code)"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": " + message
        if let detail, !detail.isEmpty { text += " (\(detail))" }
        return text
    }
}
