import PostgresClient

/// What mongoshift needs to know about a Redshift/PostgreSQL source table, discovered from the server.
public struct SourceTable: Sendable {
    public var name: TableName
    public var columns: [PostgresColumn]
    public var keyIndexes: [Int]
    public var watermarkIndex: Int?
    public var deleteIndex: Int?
    /// The target's field name of each column (`columns.rename`; the column's name otherwise).
    public var fieldNames: [String]
    /// `where:`: rows outside it are not copied, and a polled row outside it is deleted from the target.
    public var filter: String?
    /// The source compares VARCHAR ignoring trailing blanks, as Redshift does ('a' = 'a '; PostgreSQL does not):
    /// keys that differ only in them tie in key order, so text key columns are ordered by their LENGTH (which
    /// counts the blanks) too — else a page ending inside such a tie makes the next (`key > 'a'`) skip the rest.
    public var keysIgnoreTrailingBlanks = false

    public init(name: TableName, columns: [PostgresColumn], keyIndexes: [Int], watermarkIndex: Int?, deleteIndex: Int?, fieldNames: [String]? = nil) {
        self.name = name
        self.columns = columns
        self.keyIndexes = keyIndexes
        self.watermarkIndex = watermarkIndex
        self.deleteIndex = deleteIndex
        self.fieldNames = fieldNames ?? columns.map(\.name)
    }

    public var keyNames: [String] { keyIndexes.map { columns[$0].name } }
    public var watermarkName: String? { watermarkIndex.map { columns[$0].name } }
    /// The watermark column's kind (time or integer); nil without a watermark.
    var watermarkKind: WatermarkKind? { watermarkIndex.flatMap { WatermarkKind(typeOID: columns[$0].typeOID) } }
    /// The unit a time watermark's stamps are truncated to, in microseconds: Redshift's `GETDATE()` stamps whole
    /// seconds (assumed whatever the column holds); PostgreSQL's `timestamp(p)` keeps p fractional digits.
    func stampUnit(_ dialect: SQLDialect) -> Int64 {
        guard let i = watermarkIndex, case .time? = watermarkKind else { return 1 }
        if dialect == .redshift { return 1_000_000 }
        let digits = columns[i].typeModifier
        guard digits >= 0, digits < 6 else { return 1 }
        return (0..<(6 - Int(digits))).reduce(1) { unit, _ in unit * 10 }
    }
    public var qualifiedName: String { SQL.qualified(schema: name.schema, name: name.name) }
    /// The columns as the pages select them. A REAL (not a key) is read as DOUBLE PRECISION: Redshift prints a
    /// REAL with 8 significant digits at most, one short of reading back exactly; the double holds it exactly and
    /// the encoder narrows it again (`TextValueDecoder.parseFloat`).
    public var selectList: String {
        columns.enumerated().map { i, column in
            let name = SQL.identifier(column.name)
            return column.typeOID == PostgresType.float4 && !keyIndexes.contains(i) ? "CAST(\(name) AS DOUBLE PRECISION) AS \(name)" : name
        }.joined(separator: ", ")
            + (filter.map { ", CASE WHEN (\($0)) THEN 1 ELSE 0 END AS \(SQL.identifier(Self.inFilterColumn))" } ?? "")
    }
    static let inFilterColumn = "_mongoshift_in"
    /// The result column saying whether a row matches `where:` (after the table's columns); nil without a filter.
    public var inFilterIndex: Int? { filter == nil ? nil : columns.count }
    /// `(where)`, or nil without a filter: for conditions that must only see matching rows.
    public var filterCondition: String? { filter.map { "(\($0))" } }
    /// Whether key column `position` (of `keyIndexes`) is ordered and compared by its LENGTH too
    /// (`keysIgnoreTrailingBlanks`). CHAR is not: its values are padded alike, so blank-only differences are equal values.
    func keyOrdersByLength(_ position: Int) -> Bool {
        keysIgnoreTrailingBlanks && [PostgresType.varchar, PostgresType.text].contains(columns[keyIndexes[position]].typeOID)
    }

    /// The first key column is integer-typed: partitions split min…max arithmetically.
    public var hasIntegerKey: Bool { keyIndexes.first.map { PostgresType.integers.contains(columns[$0].typeOID) } ?? false }

    /// Reads the column list (`SELECT * … LIMIT 0`, which Redshift and PostgreSQL both answer from the catalog)
    /// and resolves the key (configured, else the declared primary key), watermark and soft-delete columns.
    public static func describe(_ connection: PostgresConnection, stream: StreamConfig, dialect: SQLDialect) async throws -> SourceTable {
        let qualified = SQL.qualified(schema: stream.table.schema, name: stream.table.name)
        let probe: PostgresRows
        do {
            probe = try await connection.query("SELECT * FROM \(qualified) LIMIT 0")
        } catch let error as PostgresError where error.sqlState == "42P01" {
            throw ReplicationError(.configuration, stream: stream.name, "table \(stream.table) not found")
        }
        var columns = probe.columns
        var keyNames = stream.key
        if keyNames.isEmpty {
            keyNames = try await declaredPrimaryKey(connection, table: stream.table, dialect: dialect)
            if keyNames.isEmpty {
                throw ReplicationError(.configuration, stream: stream.name,
                                       "no key: set `key:` (Redshift does not enforce primary keys) or declare one on \(stream.table)")
            }
        }
        // `columns:` — excluded columns are never selected, so they never reach the spool.
        let mapping = stream.columns
        if !mapping.isIdentity {
            func actual(_ name: String) -> String? {
                (columns.first { $0.name == name } ?? columns.first { $0.name.lowercased() == name.lowercased() })?.name
            }
            for name in (mapping.include ?? []) + mapping.exclude + Array(mapping.rename.keys) where actual(name) == nil {
                throw ReplicationError(.configuration, stream: stream.name, "columns: no column \"\(name)\" in \(stream.table)")
            }
            let needed = Set((keyNames + [stream.watermark, stream.deleteColumn].compactMap { $0 }).compactMap(actual))
            if let name = mapping.exclude.compactMap(actual).first(where: needed.contains) {
                throw ReplicationError(.configuration, stream: stream.name, "columns.exclude: \"\(name)\" is the stream's key, watermark or soft-delete column")
            }
            let excluded = Set(mapping.exclude.compactMap(actual))
            let included = mapping.include.map { Set($0.compactMap(actual)) }
            columns = columns.filter { needed.contains($0.name) || (!excluded.contains($0.name) && (included?.contains($0.name) ?? true)) }
        }
        let fieldNames = columns.map { column in mapping.rename.first { $0.key == column.name || $0.key.lowercased() == column.name.lowercased() }?.value ?? column.name }
        // Column names become field names of replacement documents, which drivers refuse (and MongoDB's
        // update paths misread) when they start with '$' or contain '.': say so now, not once per row.
        if let bad = fieldNames.first(where: { $0.hasPrefix("$") || $0.contains(".") || $0.isEmpty }) {
            throw ReplicationError(.configuration, stream: stream.name,
                                   "column \"\(bad)\" of \(stream.table) cannot be a MongoDB field name ('$' prefix or '.'); rename it (`columns.rename`) or exclude it")
        }
        if Set(fieldNames).count < fieldNames.count {
            throw ReplicationError(.configuration, stream: stream.name, "columns.rename: two columns would have the same field name")
        }
        func index(of name: String, role: String) throws -> Int {
            guard let i = columns.firstIndex(where: { $0.name == name }) ?? columns.firstIndex(where: { $0.name.lowercased() == name.lowercased() }) else {
                throw ReplicationError(.configuration, stream: stream.name, "\(role) column \"\(name)\" not found in \(stream.table)")
            }
            return i
        }
        let keyIndexes = try keyNames.map { try index(of: $0, role: "key") }
        let watermarkIndex = try stream.watermark.map { try index(of: $0, role: "watermark") }
        if let w = watermarkIndex {
            if columns[w].typeOID == PostgresType.date {
                // Every change of a day carries the same value: changes after the tail passed a day's last key
                // could never be ordered, or re-reading the day would rewrite it on every poll.
                let finer = columns.filter { $0.typeOID == PostgresType.timestamp || $0.typeOID == PostgresType.timestamptz }.map(\.name)
                throw ReplicationError(.configuration, stream: stream.name,
                                       "watermark column \"\(columns[w].name)\" is a date: changes within a day cannot be ordered; use a timestamp column"
                                       + (finer.isEmpty ? " (add one, e.g. updated_at maintained on every change)" : " (candidates: \(finer.joined(separator: ", ")))"))
            }
            if WatermarkKind(typeOID: columns[w].typeOID) == nil {
                throw ReplicationError(.configuration, stream: stream.name, "watermark column \"\(columns[w].name)\" must be a timestamp or integer")
            }
            switch (stream.lookback, WatermarkKind(typeOID: columns[w].typeOID)!) {
            case (.units, .time):
                throw ReplicationError(.configuration, stream: stream.name, "lookback for the time watermark \"\(columns[w].name)\" is a duration (e.g. 10m), not a number")
            case (.duration, .integer):
                throw ReplicationError(.configuration, stream: stream.name, "lookback for the integer watermark \"\(columns[w].name)\" is a number of units (e.g. 5000), not a duration")
            default: break
            }
        }
        let deleteIndex = try stream.deleteColumn.map { try index(of: $0, role: "soft-delete") }
        if let d = deleteIndex, let reason = SoftDelete.refusal(columns[d]) { throw ReplicationError(.configuration, stream: stream.name, reason) }
        if let filter = stream.filter {
            do {
                _ = try await connection.query("SELECT 1 FROM \(qualified) WHERE (\(filter)) LIMIT 0")
            } catch let error as PostgresError {
                throw ReplicationError(.configuration, stream: stream.name, "where: the source refuses the predicate: \(error.message)")
            }
        }
        var table = SourceTable(name: stream.table, columns: columns, keyIndexes: keyIndexes, watermarkIndex: watermarkIndex, deleteIndex: deleteIndex,
                                fieldNames: fieldNames)
        table.filter = stream.filter
        table.keysIgnoreTrailingBlanks = dialect == .redshift
        return table
    }

    /// The table's declared primary key, looked up under the schema its name resolves to (a bare name through
    /// `search_path`: `public`'s table of the same name would lend its key).
    static func declaredPrimaryKey(_ connection: PostgresConnection, table: TableName, dialect: SQLDialect) async throws -> [String] {
        guard let resolved = try await SourceCatalog.resolve(table, on: connection, dialect: dialect) else { return [] }
        let rows = try await connection.query("""
            SELECT kcu.column_name FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name
            WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = $1 AND tc.table_name = $2
            ORDER BY kcu.ordinal_position
            """, [resolved.schema, resolved.name])
        return rows.rows.compactMap { $0[0] }
    }
}
