import PostgresClient

/// SQL for keyset pages and watermark polls. Identifiers quoted, every value a bound parameter; only constructs
/// Redshift accepts (no row-value comparison, no COPY TO STDOUT, no cursors).
public enum KeysetQuery {
    /// One snapshot page: rows with key > `after` (lexicographic over the key columns), first key column within
    /// (`lower`, `upper`], in key order, at most `limit` rows.
    public static func snapshotPage(table: SourceTable, after: [String]?, lower: String?, upper: String?, limit: Int) -> (sql: String, params: [String?]) {
        var params: [String?] = []
        var conditions: [String] = []
        let keys = table.keyNames.map(SQL.identifier)
        func bind(_ value: String) -> String {
            params.append(value)
            return "$\(params.count)"
        }
        if let after {
            conditions.append(lexicographicAfter(columns: keys, values: after, bind: bind))
        } else if let lower {
            conditions.append("\(keys[0]) > \(bind(lower))")
        }
        if let upper { conditions.append("\(keys[0]) <= \(bind(upper))") }
        // NULL keys never qualify for a keyset page; `check` and the snapshot report them.
        for k in keys { conditions.append("\(k) IS NOT NULL") }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName)\(whereClause) ORDER BY \(keys.joined(separator: ", ")) LIMIT \(limit)"
        return (sql, params)
    }

    /// One watermark poll: rows after the composite position `(wm, key)`, never past `now() - safetyLag` on the
    /// source's own clock, in `(wm, key)` order.
    public static func tailPoll(table: SourceTable, dialect: SQLDialect, afterWatermark: String?, afterKey: [String]?,
                                safetyLagSeconds: Int, limit: Int) -> (sql: String, params: [String?]) {
        var params: [String?] = []
        func bind(_ value: String) -> String {
            params.append(value)
            return "$\(params.count)"
        }
        let wm = SQL.identifier(table.watermarkName!)
        let keys = table.keyNames.map(SQL.identifier)
        var conditions: [String] = ["\(wm) <= \(sourceNow(dialect, table: table, minusSeconds: safetyLagSeconds))"]
        if let afterWatermark {
            let w = bind(afterWatermark)
            if let afterKey, !afterKey.isEmpty {
                conditions.insert("(\(wm) > \(w) OR (\(wm) = \(w) AND \(lexicographicAfter(columns: keys, values: afterKey, bind: bind))))", at: 0)
            } else {
                conditions.insert("\(wm) >= \(w)", at: 0)
            }
        } else {
            conditions.insert("\(wm) IS NOT NULL", at: 0)
        }
        let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName) WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(wm), \(keys.joined(separator: ", ")) LIMIT \(limit)"
        return (sql, params)
    }

    /// The source clock minus a lag, typed like the watermark column (timestamp, timestamptz, date or integer).
    static func sourceNow(_ dialect: SQLDialect, table: SourceTable, minusSeconds: Int) -> String {
        let type = table.columns[table.watermarkIndex!].typeOID
        if PostgresType.integers.contains(type) {
            // Integer watermarks (sequence numbers, epoch values) have no clock bound.
            return "\(SQL.identifier(table.watermarkName!))"
        }
        switch dialect {
        case .redshift: return "DATEADD(second, -\(minusSeconds), GETDATE())"
        case .postgres: return "(now() AT TIME ZONE 'UTC' - INTERVAL '\(minusSeconds) seconds')"
        }
    }

    /// The source's clock, as text comparable with the watermark column (used as the snapshot start).
    public static func sourceClock(_ dialect: SQLDialect) -> String {
        switch dialect {
        case .redshift: return "SELECT GETDATE()::text"
        case .postgres: return "SELECT (now() AT TIME ZONE 'UTC')::timestamp(6)::text"
        }
    }

    /// `(a, b) > ($1, $2)` spelled without row values: `a > $1 OR (a = $1 AND b > $2)`.
    static func lexicographicAfter(columns: [String], values: [String], bind: (String) -> String) -> String {
        let placeholders = values.map(bind)
        var terms: [String] = []
        for i in 0..<columns.count {
            var parts = (0..<i).map { "\(columns[$0]) = \(placeholders[$0])" }
            parts.append("\(columns[i]) > \(placeholders[i])")
            terms.append(parts.count == 1 ? parts[0] : "(" + parts.joined(separator: " AND ") + ")")
        }
        return terms.count == 1 ? terms[0] : "(" + terms.joined(separator: " OR ") + ")"
    }
}
