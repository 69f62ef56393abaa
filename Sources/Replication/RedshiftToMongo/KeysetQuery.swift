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
            conditions.append(keyAfter(table, key: after, bind: bind))
        } else if let lower {
            conditions.append("\(keys[0]) > \(bind(lower))")
        }
        if let upper { conditions.append("\(keys[0]) <= \(bind(upper))") }
        conditions.append(keysNotNull(keys))
        if let filter = table.filterCondition { conditions.append(filter) }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName)\(whereClause) ORDER BY \(keyOrder(table)) LIMIT \(limit)"
        return (sql, params)
    }

    /// Every row with one key (the key a full page ended at: its rows past the page are repeats the next page,
    /// `key > last`, would not see), at most `limit`.
    public static func keyRows(table: SourceTable, key: [String], limit: Int) -> (sql: String, params: [String?]) {
        let (condition, params) = keyEquals(table, key: key)
        return ("SELECT \(table.selectList) FROM \(table.qualifiedName) WHERE \(condition) LIMIT \(limit)", params)
    }

    /// How many rows have one key.
    public static func keyRowCount(table: SourceTable, key: [String]) -> (sql: String, params: [String?]) {
        let (condition, params) = keyEquals(table, key: key)
        return ("SELECT CAST(count(*) AS varchar) FROM \(table.qualifiedName) WHERE \(condition)", params)
    }

    private static func keyEquals(_ table: SourceTable, key: [String]) -> (String, [String?]) {
        var params: [String?] = []
        let terms = keyTerms(table, key: key) { value in
            params.append(value)
            return "$\(params.count)"
        }
        var conditions = terms.map { "\($0.column) = \($0.value)" }
        if let filter = table.filterCondition { conditions.append(filter) }
        return (conditions.joined(separator: " AND "), params)
    }

    /// The key's order: its columns, each text column followed by its LENGTH where the source ignores trailing
    /// blanks in comparisons (`SourceTable.keysIgnoreTrailingBlanks`).
    static func keyOrder(_ table: SourceTable) -> String {
        table.keyNames.indices.flatMap { i in
            let column = SQL.identifier(table.keyNames[i])
            return table.keyOrdersByLength(i) ? [column, "LENGTH(\(column))"] : [column]
        }.joined(separator: ", ")
    }

    /// The terms of `keyOrder` with the placeholders of one key's values (each bound once): a LENGTH term's value is
    /// the key text's length in characters, as Redshift's LENGTH counts them (trailing blanks included).
    static func keyTerms(_ table: SourceTable, key: [String], bind: (String) -> String) -> [(column: String, value: String)] {
        var terms: [(column: String, value: String)] = []
        for (i, name) in table.keyNames.enumerated() {
            let column = SQL.identifier(name)
            terms.append((column, bind(key[i])))
            if table.keyOrdersByLength(i) {
                terms.append(("LENGTH(\(column))", "CAST(\(bind(String(key[i].unicodeScalars.count))) AS INTEGER)"))
            }
        }
        return terms
    }

    /// Rows after one key in `keyOrder`.
    static func keyAfter(_ table: SourceTable, key: [String], bind: (String) -> String) -> String {
        let terms = keyTerms(table, key: key, bind: bind)
        return lexicographicAfter(columns: terms.map(\.column), placeholders: terms.map(\.value))
    }

    /// One watermark poll: rows after the composite position `(wm, key)` and at most `upperBound` (`PollBound`),
    /// in `(wm, key)` order. Bounds are bound parameters cast to the column's type: the same SQL on Redshift and
    /// PostgreSQL, no date arithmetic in SQL.
    public static func tailPoll(table: SourceTable, castType: String, afterWatermark: String?, afterKey: [String]?,
                                upperBound: String, limit: Int) -> (sql: String, params: [String?]) {
        var params: [String?] = []
        func bind(_ value: String) -> String {
            params.append(value)
            return "CAST($\(params.count) AS \(castType))"
        }
        func bindText(_ value: String) -> String {
            params.append(value)
            return "$\(params.count)"
        }
        let wm = SQL.identifier(table.watermarkName!)
        let keys = table.keyNames.map(SQL.identifier)
        var conditions: [String] = []
        if let afterWatermark {
            let w = bind(afterWatermark)
            if let afterKey, !afterKey.isEmpty {
                conditions.append("(\(wm) > \(w) OR (\(wm) = \(w) AND \(keyAfter(table, key: afterKey, bind: bindText))))")
            } else {
                conditions.append("\(wm) >= \(w)")
            }
        } else {
            conditions.append("\(wm) IS NOT NULL")
        }
        conditions.append("\(wm) <= \(bind(upperBound))")
        conditions.append(keysNotNull(keys))
        let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName) WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(wm), \(keyOrder(table)) LIMIT \(limit)"
        return (sql, params)
    }

    /// A lookback page: rows with `lower < wm <= upper`, after `(afterWatermark, afterKey)` within the window.
    public static func lookbackPage(table: SourceTable, castType: String, lower: String, upper: String,
                                    afterWatermark: String?, afterKey: [String]?, limit: Int) -> (sql: String, params: [String?]) {
        var params: [String?] = [lower, upper]
        let wm = SQL.identifier(table.watermarkName!)
        let keys = table.keyNames.map(SQL.identifier)
        var condition = "\(wm) > CAST($1 AS \(castType)) AND \(wm) <= CAST($2 AS \(castType)) AND \(keysNotNull(keys))"
        if let afterWatermark, let afterKey {
            params.append(afterWatermark)
            let keyTerm = keyAfter(table, key: afterKey) { value in
                params.append(value)
                return "$\(params.count)"
            }
            condition += " AND (\(wm) > CAST($3 AS \(castType)) OR (\(wm) = CAST($3 AS \(castType)) AND \(keyTerm)))"
        }
        let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName) WHERE \(condition) ORDER BY \(wm), \(keyOrder(table)) LIMIT \(limit)"
        return (sql, params)
    }

    /// A NULL key is no position: a page of them could not move a cursor, so no page or poll reads them (the
    /// snapshot and the tail count and report them instead).
    static func keysNotNull(_ keys: [String]) -> String {
        keys.map { "\($0) IS NOT NULL" }.joined(separator: " AND ")
    }

    /// `(a, b) > ($1, $2)` spelled without row values: `a > $1 OR (a = $1 AND b > $2)`.
    static func lexicographicAfter(columns: [String], placeholders: [String]) -> String {
        var terms: [String] = []
        for i in 0..<columns.count {
            var parts = (0..<i).map { "\(columns[$0]) = \(placeholders[$0])" }
            parts.append("\(columns[i]) > \(placeholders[i])")
            terms.append(parts.count == 1 ? parts[0] : "(" + parts.joined(separator: " AND ") + ")")
        }
        return terms.count == 1 ? terms[0] : "(" + terms.joined(separator: " OR ") + ")"
    }
}
