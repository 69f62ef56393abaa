import PostgresClient

/// Redshift → Mongo lag without comparing clocks (docs/ARCHITECTURE.md, "Lag"): the source's newest watermark
/// minus the applied watermark, both values of the source.
enum WatermarkLag {
    /// `max(watermark)` of the source table, as the source prints it.
    static func sourceHead(_ connection: PostgresConnection, stream: StreamConfig) async throws -> String? {
        guard let watermark = stream.watermark else { return nil }
        let sql = "SELECT max(\(SQL.identifier(watermark)))::text FROM \(SQL.qualified(schema: stream.table.schema, name: stream.table.name))"
        return try await connection.query(sql).rows.first?.first ?? nil
    }

    /// Seconds behind for time watermarks, units behind for integer ones; nil when either side is unknown.
    static func lag(head: String?, applied: String?) -> Double? {
        guard let head, let applied else { return nil }
        if let h = TextValueDecoder.parseTimestampText(head), let a = TextValueDecoder.parseTimestampText(applied) {
            return max(0, Double(h - a) / 1000)
        }
        if let h = Int64(head), let a = Int64(applied) { return Double(max(0, h - a)) }
        return nil
    }
}
