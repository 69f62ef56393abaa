import PostgresClient

/// One stream's source table on one (re)connecting connection: every query is retried under the stream's policy,
/// pages are read row by row into spool writers. Shared by the snapshot, the tailer and the reconciler.
struct SourceReader: Sendable {
    let context: StreamContext
    let connection: PostgresSource
    let dialect: SQLDialect
    let table: SourceTable
    let policy: RetryPolicy

    /// Connects lazily and describes the stream's table (columns, key, watermark, soft-delete column).
    static func open(context: StreamContext, redshift: RedshiftEndpoint, policy: RetryPolicy) async throws -> SourceReader {
        let connection = PostgresSource(url: redshift.url)
        let table = try await connection.run(policy, logger: context.logger) { c in try await SourceTable.describe(c, stream: context.stream, dialect: redshift.dialect) }
        try await checkPositionColumns(context: context, table: table)
        return SourceReader(context: context, connection: connection, dialect: redshift.dialect, table: table, policy: policy)
    }

    /// The stream's positions are values of its watermark and key columns: once it has any, a config naming other
    /// columns is refused (they would be read as values of the new ones) until the stream is reset; the first
    /// start records them, and a reset forgets them with the positions.
    static func checkPositionColumns(context: StreamContext, table: SourceTable) async throws {
        let columns = "watermark \(table.watermarkName ?? "(none)"); key \(table.keyNames.joined(separator: ", "))"
        let recorded = try await context.state.note(.positionColumns, stream: context.name)
        if recorded == columns { return }
        let stream = try await context.state.stream(context.name)
        if let recorded, let stream, stream.phase != .new {
            throw ReplicationError(.configuration, stream: context.name,
                                   "its positions are values of \(recorded), the config now names \(columns); run `mongoshift reset --stream \(context.name) --to snapshot` "
                                   + "(or --to watermark:<value>) to start over with these columns")
        }
        if context.role == .owner { try await context.state.setNote(.positionColumns, stream: context.name, columns) }
    }

    /// The same table on a connection of its own (a second snapshot copier, the reconciler).
    func onNewConnection() -> SourceReader {
        SourceReader(context: context, connection: PostgresSource(url: connection.url), dialect: dialect, table: table, policy: policy)
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await connection.run(policy, logger: context.logger, body)
    }

    /// The first column of the first row, as text.
    func scalar(_ sql: String, _ params: [String?] = []) async throws -> String? {
        try await run { c in try await c.query(sql, params).rows.first?.first ?? nil }
    }

    /// One keyset page or poll into a segment writer (single-row mode: memory is one page, never the table).
    func page(_ sql: String, _ params: [String?], encoder: RowEncoder, reserve: Int, detectDuplicates: Bool) async throws -> PageResult {
        try await run { [context] c in
            try await PageReader.read(c, sql: sql, params: params, encoder: encoder, stream: context.name,
                                      reserveBytes: reserve, detectDuplicates: detectDuplicates)
        }
    }

    /// The rows with `key` a full page did not read, as duplicate reports (`PageReader.unseenRepeats`).
    func unseenRepeats(of key: [String], readByPage: RecordRun, encoder: RowEncoder, limit: Int) async throws -> (rows: Int, deadLetters: [DeadLetterFile.Entry]) {
        let (sql, params) = KeysetQuery.keyRows(table: table, key: key, limit: limit)
        return try await run { [context] c in
            try await PageReader.unseenRepeats(c, sql: sql, params: params, encoder: encoder, stream: context.name, readByPage: readByPage)
        }
    }
}
