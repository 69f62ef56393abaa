import PostgresClient

/// How catalog queries find a stream's source table the way its SELECTs do: a name without a schema through the
/// session's `search_path` (`pg_table_is_visible`, as an unqualified SELECT resolves it), and on Redshift the
/// lower-case name it folds quoted identifiers to (unless case-sensitive identifiers are on: then the exact
/// name, preferred when both exist). A lookup that missed the table silently disabled what it guards — the
/// open-transaction bound above all. The lookups are catalog-only queries of their own: Redshift runs
/// session-dependent catalog functions on its leader node only, never in a query that also reads a table.
enum SourceCatalog {
    /// The table's schema and name as the catalog has them, and its OID; nil when the catalog has no such table.
    struct Resolved: Sendable, Equatable {
        var schema: String
        var name: String
        var oid: String
    }

    static func resolve(_ table: TableName, on connection: PostgresConnection, dialect: SQLDialect) async throws -> Resolved? {
        let name = "CAST($2 AS varchar)", schema = "CAST($1 AS varchar)"
        let names = dialect == .redshift ? "c.relname IN (\(name), lower(\(name)))" : "c.relname = \(name)"
        let schemas = dialect == .redshift ? "n.nspname IN (\(schema), lower(\(schema)))" : "n.nspname = \(schema)"
        let sql = """
            SELECT CAST(n.nspname AS varchar), CAST(c.relname AS varchar), CAST(c.oid AS varchar)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE \(names) AND (\(schemas) OR (\(schema) IS NULL AND pg_table_is_visible(c.oid)))
            ORDER BY CASE WHEN c.relname = \(name) THEN 0 ELSE 1 END LIMIT 1
            """
        guard let row = try await connection.query(sql, [table.schema, table.name]).rows.first,
              let s = row[0], let n = row[1], let oid = row[2] else { return nil }
        return Resolved(schema: s, name: n, oid: oid)
    }

    /// The schema to name in catalog views that want one (`information_schema`, `svv_table_info`): the resolved
    /// one, else the configured one (or `public`).
    static func schema(of table: TableName, on connection: PostgresConnection, dialect: SQLDialect) async -> String {
        (try? await resolve(table, on: connection, dialect: dialect))?.schema ?? table.schema ?? "public"
    }
}
