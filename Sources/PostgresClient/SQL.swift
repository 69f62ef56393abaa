import Foundation

/// SQL text helpers. Identifiers are always quoted; values are always bound as parameters, never spliced.
public enum SQL {
    /// `"name"` with embedded quotes doubled.
    public static func identifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// `schema.table` → `"schema"."table"`; a name without a dot stays unqualified.
    public static func qualified(schema: String?, name: String) -> String {
        if let schema, !schema.isEmpty { return identifier(schema) + "." + identifier(name) }
        return identifier(name)
    }

    /// A string literal, for the rare places a parameter cannot go (COPY options). Doubles quotes.
    public static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
