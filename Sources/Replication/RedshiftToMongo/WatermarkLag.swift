import PostgresClient

/// Redshift → Mongo lag without comparing clocks (docs/ARCHITECTURE.md, "Lag"): the source's newest watermark
/// minus the applied watermark, both values of the source — seconds for time watermarks, units (a sequence's
/// numbers) for integer ones, which say nothing about time.
enum WatermarkLag {
    /// The source's newest watermark, as the source prints it (nil: the table is empty), and its column's kind.
    struct Head: Sendable {
        var text: String?
        var isInteger: Bool
    }

    /// `max(watermark)` of the source table. The column is found as `SourceTable.describe` finds it (the config's
    /// name, else the one column it names case-insensitively): the tail's column, never a "no such column".
    static func sourceHead(_ connection: PostgresConnection, table: TableName, watermark: String) async throws -> Head {
        let qualified = SQL.qualified(schema: table.schema, name: table.name)
        let columns = try await connection.query("SELECT * FROM \(qualified) LIMIT 0").columns
        guard let column = columns.first(where: { $0.name == watermark }) ?? columns.first(where: { $0.name.lowercased() == watermark.lowercased() }) else {
            throw PostgresError(code: .unexpectedResult, message: "\(table) has no watermark column \"\(watermark)\"")
        }
        return try await sourceHead(connection, table: table, column: column.name, isInteger: PostgresType.integers.contains(column.typeOID))
    }

    /// The same for a column already described (the daemon's `SourceTable`).
    static func sourceHead(_ connection: PostgresConnection, table: TableName, column: String, isInteger: Bool) async throws -> Head {
        let sql = "SELECT max(\(SQL.identifier(column)))::text FROM \(SQL.qualified(schema: table.schema, name: table.name))"
        return Head(text: try await connection.query(sql).rows.first?.first ?? nil, isInteger: isInteger)
    }

    /// How far the applied watermark is behind the head; nil when it cannot be told (nothing applied yet, or
    /// values that do not parse). An empty table has nothing to be behind.
    static func lag(head: Head, applied: String?) -> LagMeasure? {
        guard let headText = head.text else { return head.isInteger ? .units(0) : .seconds(0) }
        guard let applied else { return nil }
        if head.isInteger {
            guard let h = Int64(headText), let a = Int64(applied) else { return nil }
            return .units(h > a ? h - a : 0)
        }
        guard let h = TextValueDecoder.parseTimestampText(headText), let a = TextValueDecoder.parseTimestampText(applied) else { return nil }
        return .seconds(max(0, Double(h - a) / 1000))
    }
}
