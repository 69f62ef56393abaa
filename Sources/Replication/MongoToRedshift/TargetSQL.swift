import PostgresClient

/// SQL for the Redshift/PostgreSQL target. The `redshift` dialect uses only what Redshift accepts: no
/// ON CONFLICT, no COPY FROM STDIN, no FOR UPDATE; SUPER via JSON_PARSE, VARBYTE via FROM_HEX; column type
/// changes other than VARCHAR growth as add/copy/drop/rename.
public struct TargetSQL: Sendable {
    public let dialect: SQLDialect
    public let table: TableName

    public init(dialect: SQLDialect, table: TableName) {
        self.dialect = dialect
        self.table = table
    }

    public var target: String { SQL.qualified(schema: table.schema, name: table.name) }
    public var checkpoints: String { SQL.qualified(schema: table.schema, name: "mongoshift_checkpoints") }
    public var stage: String { SQL.identifier("mongoshift_stage_" + ColumnNaming.sanitize(table.name)) }

    public func createSchema() -> String? {
        table.schema.map { "CREATE SCHEMA IF NOT EXISTS \(SQL.identifier($0))" }
    }

    /// The column every row carries: the snapshot generation that last wrote it (see `sweep`).
    public static let generationColumn = "_mongoshift_gen"
    var generation: String { SQL.identifier(Self.generationColumn) }

    public func createTable(_ schema: TableSchema) -> String {
        let columns = schema.columns.map { c in
            "\(SQL.identifier(c.name)) \(c.type.sql(dialect))\(c.name == "_id" ? " NOT NULL" : "")"
        }
        return "CREATE TABLE IF NOT EXISTS \(target) (\(columns.joined(separator: ", ")), \(generation) bigint, PRIMARY KEY (\(SQL.identifier("_id"))))"
    }

    /// Adds the generation column to a table created before it existed.
    public func addGenerationColumn() -> String {
        "ALTER TABLE \(target) ADD COLUMN \(generation) bigint"
    }

    public func highestGeneration() -> String {
        "SELECT CAST(max(\(generation)) AS varchar(20)) FROM \(target)"
    }

    /// After a snapshot of generation `$1` is applied whole: the rows it did not write are documents deleted while
    /// the history was lost. (Rows without a generation were not written by mongoshift: left alone.)
    public func sweep() -> String {
        "DELETE FROM \(target) WHERE \(generation) < $1"
    }

    public func createCheckpoints() -> String {
        "CREATE TABLE IF NOT EXISTS \(checkpoints) (stream varchar(127) NOT NULL PRIMARY KEY, seq bigint NOT NULL, position varchar(65535), updated_at timestamp, epoch bigint NOT NULL DEFAULT 0)"
    }

    /// Creates a checkpoint row if missing. Redshift has no ON CONFLICT (its writers hold the table's lock);
    /// PostgreSQL's workers may seed the same row at once.
    public func seedCheckpoint() -> String {
        let row = "INSERT INTO \(checkpoints) (stream, seq, position, updated_at) SELECT CAST($1 AS varchar(127)), 0, NULL, \(now)"
        return dialect == .postgres ? row + " ON CONFLICT (stream) DO NOTHING"
            : row + " WHERE NOT EXISTS (SELECT 1 FROM \(checkpoints) WHERE stream = CAST($1 AS varchar(127)))"
    }

    /// Redshift: the first statement of a batch transaction. Redshift is serializable: a transaction's snapshot is
    /// taken at its first read, so the lock must come before any read or write (else concurrent writers fail with
    /// 1023); every writer of every stream of this schema takes it, so writers queue instead of conflicting.
    /// PostgreSQL locks the checkpoint row instead (`readCheckpoint`).
    public func lockCheckpoints() -> String? {
        dialect == .redshift ? "LOCK \(checkpoints)" : nil
    }

    /// Inside the batch transaction, after `lockCheckpoints`: the fence row's sequence and lease epoch.
    public func readCheckpoint() -> String {
        "SELECT seq, epoch FROM \(checkpoints) WHERE stream = $1" + (dialect == .postgres ? " FOR UPDATE" : "")
    }

    /// Inside a snapshot page's transaction, after `lockCheckpoints`: the generation fence row's value (`$1`, the
    /// stream's `<key>#gen` row: the newest snapshot generation whose pages were applied). PostgreSQL holds it
    /// shared until commit, so raising it (`raiseGenerationFence`) waits for the older pages still in flight.
    public func readGenerationFence() -> String {
        "SELECT seq FROM \(checkpoints) WHERE stream = $1" + (dialect == .postgres ? " FOR SHARE" : "")
    }

    /// Raises the generation fence `$1` to `$2` (never lowers it).
    public func raiseGenerationFence() -> String {
        "UPDATE \(checkpoints) SET seq = $2, updated_at = \(now) WHERE stream = $1 AND seq < $2"
    }

    /// The generation fence's value, outside any transaction.
    public func generationFence() -> String {
        "SELECT CAST(seq AS varchar(20)) FROM \(checkpoints) WHERE stream = $1"
    }

    /// The highest sequence the target holds for one stream: its row (`$1`) and its snapshot partitions' rows
    /// (`$2`, the prefix `<key>#p`, of `$3` characters).
    public func highestCheckpoint() -> String {
        "SELECT CAST(coalesce(max(seq), 0) AS varchar) FROM \(checkpoints) WHERE stream = $1 OR LEFT(stream, CAST($3 AS integer)) = $2"
    }

    /// `$1` key, `$2` sequence, `$3` position, `$4` the applying worker's lease epoch.
    public func advanceCheckpoint() -> String {
        "UPDATE \(checkpoints) SET seq = $2, position = $3, epoch = $4, updated_at = \(now) WHERE stream = $1"
    }

    var now: String { dialect == .redshift ? "GETDATE()" : "now()" }

    public func addColumn(_ c: TableSchema.Column) -> String {
        "ALTER TABLE \(target) ADD COLUMN \(SQL.identifier(c.name)) \(c.type.sql(dialect))"
    }

    /// PostgreSQL: any widening in place (`USING` converts the values; the key stays a key). Redshift: VARCHAR
    /// growth of a non-key column only, and outside a transaction block.
    public func alterColumnType(_ c: TableSchema.Column, from old: ColumnType) -> String {
        let column = SQL.identifier(c.name)
        guard dialect == .postgres else { return "ALTER TABLE \(target) ALTER COLUMN \(column) TYPE \(c.type.sql(dialect))" }
        let using: String = switch c.type {
        case .nested: "to_jsonb(\(column))"
        case .varchar where c.path == "_id": keyConverted(column, from: old)
        case .varchar: textConverted(column, from: old, to: c.type)
        default: "\(column)::\(c.type.sql(dialect))"
        }
        return "ALTER TABLE \(target) ALTER COLUMN \(column) TYPE \(c.type.sql(dialect)) USING \(using)"
    }

    /// The value of `column` (of type `old`) converted to `new`, for a column swap or a table rebuild.
    func converted(_ column: String, from old: ColumnType, to new: ColumnType) -> String {
        let c = SQL.identifier(column)
        if old == new { return c }
        return switch new {
        case .varchar where column == "_id": keyConverted(c, from: old)
        case .nested: "CAST(\(c) AS SUPER)"
        case .varchar: textConverted(c, from: old, to: new)
        default: "CAST(\(c) AS \(new.sql(dialect)))"
        }
    }

    /// A non-key column `c` (quoted) of type `old` as the text a VARCHAR column gets for such values from then on
    /// (`ValueText.scalarText`), so old and new rows read alike: booleans `true`/`false` (Redshift casts no
    /// BOOLEAN to a character type), binaries base64, dates with their milliseconds.
    func textConverted(_ c: String, from old: ColumnType, to new: ColumnType) -> String {
        switch old {
        case .boolean: "CASE WHEN \(c) THEN 'true' WHEN NOT \(c) THEN 'false' END"
        case .binary: dialect == .redshift ? "FROM_VARBYTE(\(c), 'base64')" : "replace(encode(\(c), 'base64'), chr(10), '')"
        case .timestamp: "TO_CHAR(\(c), 'YYYY-MM-DD HH24:MI:SS.MS')"
        case .nested: dialect == .redshift ? "JSON_SERIALIZE(\(c))" : "\(c)::text"
        default: "CAST(\(c) AS \(new.sql(dialect)))"
        }
    }

    /// The key text (`KeyText`) of the `_id` column `c` (quoted) of type `old`, in SQL both dialects run: the
    /// rows of a key column that becomes text read as the documents' `_id`s are written from then on, so later
    /// changes find them. Integral numbers (whatever the column type) become `{"$numberLong":"n"}`; other doubles
    /// and decimals their shortest text and their digits without the scale's trailing zeros; dates milliseconds
    /// since 1970; binaries their hex. A text column stays as it is.
    func keyConverted(_ c: String, from old: ColumnType) -> String {
        func tagged(_ tag: String, _ text: String, close: String = "'\"}'") -> String { "'{\"$\(tag)\":\"' || \(text) || \(close)" }
        let long = tagged("numberLong", "CAST(CAST(\(c) AS BIGINT) AS VARCHAR(20))")
        let inInt64 = "\(c) >= -9223372036854775808 AND \(c) <= 9223372036854775807"
        switch old {
        case .integer, .bigint:
            return tagged("numberLong", "CAST(\(c) AS VARCHAR(20))")
        case .double:
            // Compared as doubles: 2^63 is the first double past Int64.
            let bounds = "\(c) >= CAST(-9223372036854775808 AS DOUBLE PRECISION) AND \(c) < CAST(9223372036854775808 AS DOUBLE PRECISION)"
            return "CASE WHEN \(c) = FLOOR(\(c)) AND \(bounds) THEN \(long) ELSE \(tagged("numberDouble", "CAST(\(c) AS VARCHAR(32))")) END"
        case .decimal(let scale):
            let digits = scale > 0 ? "RTRIM(RTRIM(CAST(\(c) AS VARCHAR(48)), '0'), '.')" : "CAST(\(c) AS VARCHAR(48))"
            return "CASE WHEN \(c) = TRUNC(\(c)) AND \(inInt64) THEN \(long) ELSE \(tagged("numberDecimal", digits)) END"
        case .char24:
            return tagged("oid", c)
        case .timestamp:
            let ms = dialect == .redshift ? "DATEDIFF(millisecond, TIMESTAMP '1970-01-01 00:00:00', \(c))"
                                          : "CAST(FLOOR(EXTRACT(EPOCH FROM \(c)) * 1000) AS BIGINT)"
            return "'{\"$date\":' || \(tagged("numberLong", "CAST(\(ms) AS VARCHAR(20))", close: "'\"}}'"))"
        case .boolean:
            return "CASE WHEN \(c) THEN 'true' ELSE 'false' END"
        case .binary:
            let hex = dialect == .redshift ? "TO_HEX(\(c))" : "encode(\(c), 'hex')"
            return tagged("binary", hex)
        case .varchar, .nested:
            return c
        }
    }

    /// Redshift: a non-key column whose type cannot change in place moves through a new column. Each step can run
    /// again after a crash (`SchemaChanger` looks at which columns exist).
    public struct ColumnSwap: Sendable {
        public var temporary: String
        public var addTemporary: String
        public var copy: String
        public var dropOld: String
        public var renameTemporary: String
    }

    public func columnSwap(_ c: TableSchema.Column, from old: ColumnType) -> ColumnSwap {
        let temporary = c.name + "__mongoshift_new"
        return ColumnSwap(
            temporary: temporary,
            addTemporary: "ALTER TABLE \(target) ADD COLUMN \(SQL.identifier(temporary)) \(c.type.sql(dialect))",
            copy: "UPDATE \(target) SET \(SQL.identifier(temporary)) = \(converted(c.name, from: old, to: c.type))",
            dropOld: "ALTER TABLE \(target) DROP COLUMN \(SQL.identifier(c.name))",
            renameTemporary: "ALTER TABLE \(target) RENAME COLUMN \(SQL.identifier(temporary)) TO \(SQL.identifier(c.name))")
    }

    /// Redshift: a key column's type cannot change at all (neither ALTER nor DROP): the table is rebuilt — a new
    /// table filled from the old, swapped in by two renames in one transaction, the old one dropped after.
    public struct TableRebuild: Sendable {
        public var rebuildName: String
        public var oldName: String
        public var dropRebuild: String
        public var create: String
        public var fill: String
        public var swap: [String]
        public var dropOld: String
    }

    public func tableRebuild(_ schema: TableSchema, from old: TableSchema) -> TableRebuild {
        let rebuildName = String((table.name + "__mongoshift_rebuild").prefix(127))
        let oldName = String((table.name + "__mongoshift_old").prefix(127))
        let rebuild = TargetSQL(dialect: dialect, table: TableName(schema: table.schema, name: rebuildName))
        let oldTypes = Dictionary(uniqueKeysWithValues: old.columns.map { ($0.name, $0.type) })
        let existing = schema.columns.filter { oldTypes[$0.name] != nil }
        let columns = (existing.map { SQL.identifier($0.name) } + [generation]).joined(separator: ", ")
        let values = (existing.map { converted($0.name, from: oldTypes[$0.name]!, to: $0.type) } + [generation]).joined(separator: ", ")
        return TableRebuild(
            rebuildName: rebuildName, oldName: oldName,
            dropRebuild: "DROP TABLE IF EXISTS \(rebuild.target)",
            create: rebuild.createTable(schema),
            fill: "INSERT INTO \(rebuild.target) (\(columns)) SELECT \(values) FROM \(target)",
            swap: ["ALTER TABLE \(target) RENAME TO \(SQL.identifier(oldName))",
                   "ALTER TABLE \(rebuild.target) RENAME TO \(SQL.identifier(table.name))"],
            dropOld: "DROP TABLE IF EXISTS \(SQL.qualified(schema: table.schema, name: oldName))")
    }

    /// The target's columns as the catalog has them (`$1` schema, `$2` table).
    public func catalogColumns() -> String {
        "SELECT column_name, data_type, CAST(character_maximum_length AS varchar(12)), CAST(numeric_scale AS varchar(12)) "
            + "FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
    }

    var catalogParameters: [String?] { [table.schema ?? "public", table.name] }

    /// A session-local staging table: the target's columns plus `__op` ('u' upsert, 'd' delete).
    public func createStage(_ schema: TableSchema) -> [String] {
        let columns = schema.columns.map { "\(SQL.identifier($0.name)) \($0.type.sql(dialect))" } + ["\"__op\" char(1)"]
        return ["DROP TABLE IF EXISTS \(stage)", "CREATE TEMP TABLE \(stage) (\(columns.joined(separator: ", ")))"]
    }

    /// PostgreSQL: `COPY stage FROM STDIN` (text format).
    public func copyStage(_ schema: TableSchema) -> String {
        "COPY \(stage) (\((schema.columns.map { SQL.identifier($0.name) } + ["\"__op\""]).joined(separator: ", "))) FROM STDIN"
    }

    /// PostgreSQL: a snapshot page straight into the target, each row's last column the snapshot generation.
    public func copyTarget(_ schema: TableSchema) -> String {
        "COPY \(target) (\((schema.columns.map { SQL.identifier($0.name) } + [generation]).joined(separator: ", "))) FROM STDIN"
    }

    /// Redshift: one multi-row INSERT for `rows` rows, every value a parameter (SUPER through JSON_PARSE,
    /// VARBYTE through FROM_HEX).
    public func insertStage(_ schema: TableSchema, rows: Int) -> String {
        let width = schema.columns.count + 1
        var tuples: [String] = []
        tuples.reserveCapacity(rows)
        for r in 0..<rows {
            var values: [String] = []
            for (c, column) in schema.columns.enumerated() {
                let p = "$\(r * width + c + 1)"
                let value: String = switch column.type {
                case .nested: "JSON_PARSE(\(p))"
                case .binary: "FROM_HEX(\(p))"
                default: p
                }
                values.append(value)
            }
            values.append("$\(r * width + width)")
            tuples.append("(" + values.joined(separator: ", ") + ")")
        }
        let columns = (schema.columns.map { SQL.identifier($0.name) } + ["\"__op\""]).joined(separator: ", ")
        return "INSERT INTO \(stage) (\(columns)) VALUES " + tuples.joined(separator: ", ")
    }

    /// PostgreSQL: the number of valid, immediate, non-partial unique indexes on `_id` alone of the target as the
    /// session resolves its name (what ON CONFLICT can use as its arbiter). `$1`: `target`.
    public func keyIndexCount() -> String {
        "SELECT CAST(count(*) AS integer) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            + "WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL "
            + "AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND a.attname = '_id'"
    }

    /// PostgreSQL with a unique index on `_id`: the batch's upserts in one statement, every column replaced (what
    /// delete + insert does) — each key probed through the index instead of a join over the whole target.
    public func upsertOnConflict(_ schema: TableSchema) -> String {
        let names = schema.columns.map { SQL.identifier($0.name) }
        let sets = (names.dropFirst() + [generation]).map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
        let columns = names.joined(separator: ", ")
        return "INSERT INTO \(target) (\(columns), \(generation)) SELECT \(columns), CAST($1 AS bigint) FROM \(stage) WHERE \"__op\" = 'u' "
            + "ON CONFLICT (\(SQL.identifier("_id"))) DO UPDATE SET \(sets)"
    }

    /// The batch's deletes alone (with `upsertOnConflict`).
    public func deleteRemoved() -> String {
        "DELETE FROM \(target) USING \(stage) WHERE \(target).\"_id\" = \(stage).\"_id\" AND \(stage).\"__op\" = 'd'"
    }

    public func deleteChanged() -> String {
        "DELETE FROM \(target) USING \(stage) WHERE \(target).\"_id\" = \(stage).\"_id\""
    }

    /// `$1`: the snapshot generation the rows carry.
    public func insertUpserts(_ schema: TableSchema) -> String {
        let columns = schema.columns.map { SQL.identifier($0.name) }.joined(separator: ", ")
        return "INSERT INTO \(target) (\(columns), \(generation)) SELECT \(columns), CAST($1 AS bigint) FROM \(stage) WHERE \"__op\" = 'u'"
    }

    public func truncate() -> String { "TRUNCATE \(target)" }
}
