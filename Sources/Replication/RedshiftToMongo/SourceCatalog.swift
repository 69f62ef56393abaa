import PostgresClient

/// How catalog queries find a stream's source table the way its SELECTs do: a name without a schema through the
/// session's `search_path` (`pg_table_is_visible`, as an unqualified SELECT resolves it), and on Redshift the
/// lower-case name it folds quoted identifiers to (unless case-sensitive identifiers are on: then the exact
/// name, preferred when both exist). A lookup that missed the table silently disabled what it guards — the
/// open-transaction bound above all.
enum SourceCatalog {
    /// A condition over `pg_class c` joined to `pg_namespace n`: `$schema` the schema (NULL: none given), `$name`
    /// the table's name.
    static func tableMatch(_ dialect: SQLDialect, schema: Int, name: Int) -> String {
        // Typed once: `lower()` would deduce text where the comparison deduces name.
        let s = "CAST($\(schema) AS varchar)", t = "CAST($\(name) AS varchar)"
        switch dialect {
        case .postgres:
            return "c.relname = \(t) AND (n.nspname = \(s) OR (\(s) IS NULL AND pg_table_is_visible(c.oid)))"
        case .redshift:
            return "c.relname IN (\(t), lower(\(t))) AND (n.nspname IN (\(s), lower(\(s))) OR (\(s) IS NULL AND pg_table_is_visible(c.oid)))"
        }
    }

    /// The table's OID as a scalar subquery (parameters `$schema`, `$name`), the exact name first.
    static func tableOID(_ dialect: SQLDialect, schema: Int, name: Int) -> String {
        "(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE \(tableMatch(dialect, schema: schema, name: name)) "
            + "ORDER BY CASE WHEN c.relname = CAST($\(name) AS varchar) THEN 0 ELSE 1 END LIMIT 1)"
    }

    /// The two parameters, in that order.
    static func parameters(_ table: TableName) -> [String?] { [table.schema, table.name] }
}
