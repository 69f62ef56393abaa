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

    /// Adds the generation column to a table created before it existed (42701 when it is there already).
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

    /// Creates the stream's checkpoint row if missing (no ON CONFLICT: Redshift has none).
    public func seedCheckpoint() -> String {
        "INSERT INTO \(checkpoints) (stream, seq, position, updated_at) SELECT CAST($1 AS varchar(127)), 0, NULL, \(now) WHERE NOT EXISTS (SELECT 1 FROM \(checkpoints) WHERE stream = CAST($1 AS varchar(127)))"
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

    /// `$1` key, `$2` sequence, `$3` position, `$4` the applying worker's lease epoch.
    public func advanceCheckpoint() -> String {
        "UPDATE \(checkpoints) SET seq = $2, position = $3, epoch = $4, updated_at = \(now) WHERE stream = $1"
    }

    var now: String { dialect == .redshift ? "GETDATE()" : "now()" }

    /// DDL for a schema change. Redshift cannot change a column's type in place except VARCHAR growth, and cannot
    /// run that ALTER inside a transaction: callers run DDL before the data transaction.
    public func ddl(for change: SchemaChange) -> [String] {
        switch change {
        case .addColumn(let c):
            return ["ALTER TABLE \(target) ADD COLUMN \(SQL.identifier(c.name)) \(c.type.sql(dialect))"]
        case .widenColumn(let c, let old):
            let column = SQL.identifier(c.name)
            if dialect == .postgres {
                let using: String = switch c.type {
                case .nested: "to_jsonb(\(column))"
                case .varchar: "\(column)::text"
                default: "\(column)::\(c.type.sql(dialect))"
                }
                return ["ALTER TABLE \(target) ALTER COLUMN \(column) TYPE \(c.type.sql(dialect)) USING \(using)"]
            }
            if old.canAlterInPlace(to: c.type, dialect: dialect) {
                return ["ALTER TABLE \(target) ALTER COLUMN \(column) TYPE \(c.type.sql(dialect))"]
            }
            let temporary = SQL.identifier(c.name + "__mongoshift_new")
            let cast: String = switch c.type {
            case .nested: "CAST(\(column) AS SUPER)"
            case .varchar: old == .nested ? "JSON_SERIALIZE(\(column))" : "CAST(\(column) AS \(c.type.sql(dialect)))"
            default: "CAST(\(column) AS \(c.type.sql(dialect)))"
            }
            return [
                "ALTER TABLE \(target) ADD COLUMN \(temporary) \(c.type.sql(dialect))",
                "UPDATE \(target) SET \(temporary) = \(cast)",
                "ALTER TABLE \(target) DROP COLUMN \(column)",
                "ALTER TABLE \(target) RENAME COLUMN \(temporary) TO \(column)",
            ]
        }
    }

    /// A session-local staging table: the target's columns plus `__op` ('u' upsert, 'd' delete).
    public func createStage(_ schema: TableSchema) -> [String] {
        let columns = schema.columns.map { "\(SQL.identifier($0.name)) \($0.type.sql(dialect))" } + ["\"__op\" char(1)"]
        return ["DROP TABLE IF EXISTS \(stage)", "CREATE TEMP TABLE \(stage) (\(columns.joined(separator: ", ")))"]
    }

    /// PostgreSQL: `COPY stage FROM STDIN` (text format).
    public func copyStage(_ schema: TableSchema) -> String {
        "COPY \(stage) (\((schema.columns.map { SQL.identifier($0.name) } + ["\"__op\""]).joined(separator: ", "))) FROM STDIN"
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
