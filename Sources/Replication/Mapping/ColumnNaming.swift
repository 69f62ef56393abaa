/// Mongo field paths → target column names: lower case, `[a-z0-9_]`, not starting with a digit, within the
/// dialect's identifier limit (Redshift 127 bytes, PostgreSQL 63: it cuts longer names silently, so two long
/// paths would meet in one column and the catalog would never show the name asked for). Two fields that sanitise
/// to one name are an error naming both.
public enum ColumnNaming {
    public static let maxBytes = 127

    /// The longest identifier `dialect` keeps whole.
    public static func maxBytes(_ dialect: SQLDialect) -> Int { dialect == .postgres ? 63 : 127 }

    public static func sanitize(_ path: String, maxBytes: Int = maxBytes) -> String {
        var out = ""
        for scalar in path.lowercased().unicodeScalars {
            if (scalar >= "a" && scalar <= "z") || (scalar >= "0" && scalar <= "9") || scalar == "_" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "_"
            }
        }
        if out.isEmpty { out = "_" }
        if let first = out.unicodeScalars.first, first >= "0" && first <= "9" { out = "_" + out }
        if out.utf8.count > maxBytes { out = String(out.prefix(maxBytes)) }
        return out
    }
}
