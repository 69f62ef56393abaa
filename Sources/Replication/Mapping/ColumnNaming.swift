/// Mongo field paths → target column names: lower case, `[a-z0-9_]`, not starting with a digit, ≤ 127 bytes
/// (Redshift's identifier limit). Two fields that sanitise to one name are an error naming both.
public enum ColumnNaming {
    public static let maxBytes = 127

    public static func sanitize(_ path: String) -> String {
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
