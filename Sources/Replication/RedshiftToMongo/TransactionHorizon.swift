import PostgresClient

/// The source's clock and the oldest open transaction writing the stream's table — the start of a transaction
/// that may still commit rows stamped before the watermark (docs/CONFIG.md, "Late commits"). PostgreSQL: the
/// sessions holding a write lock on the table (`pg_locks` + `pg_stat_activity`) and prepared transactions holding
/// one (`pg_prepared_xacts`); Redshift (no two-phase commit): `SVV_TRANSACTIONS`.
/// Other users' transactions are visible only with the grant `check` names; without it only safety_lag guards.
/// The zone a `timestamp` (no time zone) watermark's wall-clock stamps are in (docs/CONFIG.md, "Time zones").
enum StampZone: Sendable, Equatable {
    /// Instants (`timestamptz`), integers, Redshift: UTC.
    case utc
    /// The PostgreSQL server's `TimeZone`, as a session gets it before changing it.
    case serverDefault
    /// `redshift.time_zone`.
    case named(String)

    init(kind: WatermarkKind, configured: String?) {
        guard kind.readsInServerZone else { self = .utc; return }
        self = configured.map(StampZone.named) ?? .serverDefault
    }
}

struct TransactionHorizon: Sendable, Equatable {
    /// Source clock now, microseconds since the epoch (UTC).
    var now: Int64
    /// The oldest open transaction holding a write lock on the table (not this session).
    var oldestWriter: OpenTransaction?
    /// Integer watermarks: the largest watermark visible now.
    var maxWatermark: Int64?

    struct OpenTransaction: Sendable, Equatable, CustomStringConvertible {
        var pid: String
        var xid: String?
        /// Transaction start, microseconds since the epoch (UTC).
        var start: Int64
        /// A prepared (two-phase) transaction: no session, its start unknown.
        var isPrepared: Bool { pid.hasPrefix(TransactionHorizon.preparedPrefix) }
        var description: String {
            if isPrepared { return pid + (xid.map { " xid \($0)" } ?? "") + " (start unknown)" }
            return "pid \(pid)" + (xid.map { " xid \($0)" } ?? "") + " since \(ValueText.timestampMicrosText(start))"
        }
    }

    /// A prepared (two-phase) transaction holding a write lock: no session, no known start (its `start` is the
    /// epoch), so the bound holds at the position until it is committed or rolled back.
    static let preparedPrefix = "prepared transaction "

    /// PostgreSQL lock modes of sessions that may write rows (INSERT/UPDATE/DELETE take RowExclusiveLock; LOCK
    /// TABLE and DDL the stronger ones). Readers that lock rows (RowShareLock: `FOR UPDATE`, foreign-key checks),
    /// VACUUM and ANALYZE (ShareUpdateExclusiveLock) and CREATE INDEX (ShareLock) stamp nothing.
    static let writeLockModes = "'RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'"

    /// One query: the clock, the oldest writer of the table (`$1` its OID, `SourceCatalog.resolve`) and, given
    /// `maxOf`, the column's largest value. `zone` (PostgreSQL): the zone the clock and transaction starts are read
    /// in (`$2` when named).
    static func sql(_ dialect: SQLDialect, maxOf column: String?, in table: String, zone: StampZone = .utc) -> String {
        let maxValue = column.map { "(SELECT CAST(max(\(SQL.identifier($0))) AS varchar) FROM \(table))" } ?? "CAST(NULL AS varchar)"
        let tableOID = dialect == .postgres ? "CAST($1 AS oid)" : "CAST($1 AS integer)"
        switch dialect {
        case .postgres:
            let zone = switch zone {
            case .utc: "'UTC'"
            case .serverDefault: "(SELECT reset_val FROM pg_settings WHERE name = 'TimeZone')"
            case .named: "CAST($2 AS text)"
            }
            return """
                SELECT CAST(CAST(now() AT TIME ZONE \(zone) AS timestamp(6)) AS varchar), CAST(w.pid AS varchar), CAST(w.xid AS varchar),
                       CAST(w.start AS varchar), \(maxValue)
                FROM (SELECT 1 AS one) d LEFT JOIN (
                  SELECT CAST(a.pid AS varchar) AS pid, a.backend_xid AS xid, CAST(a.xact_start AT TIME ZONE \(zone) AS timestamp(6)) AS start
                  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'relation' AND l.relation = \(tableOID) AND l.mode IN (\(writeLockModes))
                    AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
                  UNION ALL
                  SELECT CAST('\(preparedPrefix)' || coalesce(p.gid, '?') AS varchar), x.transactionid, CAST(CAST('1970-01-01 00:00:00' AS timestamp) AS timestamp(6))
                  FROM pg_locks l
                  LEFT JOIN pg_locks x ON x.virtualtransaction = l.virtualtransaction AND x.locktype = 'transactionid' AND x.pid IS NULL
                  LEFT JOIN pg_prepared_xacts p ON p.transaction = x.transactionid
                  WHERE l.locktype = 'relation' AND l.relation = \(tableOID) AND l.mode IN (\(writeLockModes)) AND l.pid IS NULL
                  ORDER BY start LIMIT 1) w ON 1 = 1
                """
        case .redshift:
            return """
                SELECT CAST(SYSDATE AS varchar), CAST(w.pid AS varchar), CAST(w.xid AS varchar), CAST(w.txn_start AS varchar), \(maxValue)
                FROM (SELECT 1 AS one) d LEFT JOIN (
                  SELECT t.pid, t.xid, t.txn_start FROM svv_transactions t
                  WHERE t.lockable_object_type = 'relation' AND t.relation = \(tableOID) AND t.lock_mode <> 'AccessShareLock'
                    AND t.pid <> pg_backend_pid()
                  ORDER BY t.txn_start LIMIT 1) w ON 1 = 1
                """
        }
    }

    static func probe(_ reader: SourceReader, kind: WatermarkKind) async throws -> TransactionHorizon {
        let table = reader.table
        return try await reader.run { [dialect = reader.dialect] c in
            try await probe(c, dialect: dialect, table: table.name, maxOf: kind == .integer ? table.watermarkName : nil,
                            zone: StampZone(kind: kind, configured: reader.context.config.redshift?.timeZone))
        }
    }

    static func probe(_ connection: PostgresConnection, dialect: SQLDialect, table: TableName, maxOf column: String?,
                      zone: StampZone = .utc) async throws -> TransactionHorizon {
        let zone = dialect == .postgres ? zone : .utc
        let sql = sql(dialect, maxOf: column, in: SQL.qualified(schema: table.schema, name: table.name), zone: zone)
        // Resolved apart (a catalog-only query): a table the catalog does not have has no writers to hold for.
        var params: [String?] = [try await SourceCatalog.resolve(table, on: connection, dialect: dialect)?.oid]
        if case .named(let name) = zone { params.append(name) }
        let row = try await connection.query(sql, params).rows.first
        guard let row, let nowText = row[0], let now = WatermarkKind.time(withTimeZone: false).value(of: nowText) else {
            throw PostgresError(code: .unexpectedResult, message: "the source did not report its clock")
        }
        var writer: OpenTransaction?
        if let pid = row[1], let startText = row[3], let start = WatermarkKind.time(withTimeZone: false).value(of: startText) {
            writer = OpenTransaction(pid: pid, xid: row[2], start: start)
        }
        return TransactionHorizon(now: now, oldestWriter: writer, maxWatermark: row[4].flatMap { Int64($0) })
    }

    /// Whether this login sees other users' transactions (else only its own, and only safety_lag guards), and
    /// the grant that would let it.
    static func visibility(_ connection: PostgresConnection, dialect: SQLDialect) async throws -> (visible: Bool, grant: String) {
        switch dialect {
        case .postgres:
            let visible = try await connection.query("""
                SELECT CAST(rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS varchar) FROM pg_roles WHERE rolname = current_user
                """).rows.first?.first ?? nil
            return (visible == "true", "GRANT pg_read_all_stats TO <the mongoshift login>")
        case .redshift:
            let row = try await connection.query("SELECT CAST(superuser AS varchar), syslog_access FROM svv_user_info WHERE user_name = current_user").rows.first
            let visible = row?[0] == "true" || row?[1] == "UNRESTRICTED"
            return (visible, "ALTER USER <the mongoshift login> WITH SYSLOG ACCESS UNRESTRICTED")
        }
    }
}
