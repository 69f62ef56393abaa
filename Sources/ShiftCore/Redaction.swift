import Foundation

/// Removes secrets from connection strings before they reach a log line, an error or a state file.
public enum Redaction {
    /// `scheme://user:secret@host` → `scheme://user:***@host`; `password=secret` → `password=***`
    /// (conninfo key/value form and URI query parameters alike).
    public static func redact(_ text: String) -> String {
        var out = redactUserInfo(text)
        for key in ["password", "passwd", "pwd", "sslpassword", "tlsCertificateKeyFilePassword"] {
            out = redactKeyValue(out, key: key)
        }
        return out
    }

    /// COPY and UNLOAD authorization clauses: `SECRET_ACCESS_KEY '…'`, `SESSION_TOKEN '…'`, `CREDENTIALS '…'`
    /// → `'***'` (access key IDs are kept: they identify, they do not authorize).
    public static func redactSQL(_ sql: String) -> String {
        guard sql.range(of: "SECRET_ACCESS_KEY", options: .caseInsensitive) != nil || sql.range(of: "CREDENTIALS", options: .caseInsensitive) != nil
            || sql.range(of: "SESSION_TOKEN", options: .caseInsensitive) != nil else { return sql }
        var out = sql
        for keyword in ["SECRET_ACCESS_KEY", "SESSION_TOKEN", "CREDENTIALS"] {
            out = out.replacingOccurrences(of: "(?i)(\\b\(keyword)\\s+(AS\\s+)?)'(?:[^']|'')*'?", with: "$1'***'", options: .regularExpression)
        }
        return out
    }

    private static func redactUserInfo(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return text }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return text }
        return String(text[..<rest.startIndex]) + authority[..<colon] + ":***" + text[at...]
    }

    private static func redactKeyValue(_ text: String, key: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let r = rest.range(of: key + "=", options: .caseInsensitive) {
            let boundary = r.lowerBound == rest.startIndex
                || [" ", "?", "&", ";", "\t"].contains(rest[rest.index(before: r.lowerBound)])
            out += rest[..<r.upperBound]
            rest = rest[r.upperBound...]
            guard boundary else { continue }
            var end = rest.startIndex
            if rest.first == "'" {
                end = rest.index(after: end)
                while end < rest.endIndex && rest[end] != "'" {
                    if rest[end] == "\\" { end = rest.index(after: end) }
                    if end < rest.endIndex { end = rest.index(after: end) }
                }
                if end < rest.endIndex { end = rest.index(after: end) }
            } else {
                end = rest.firstIndex(where: { $0 == " " || $0 == "&" || $0 == ";" || $0 == "\t" }) ?? rest.endIndex
            }
            out += "***"
            rest = rest[end...]
        }
        return out + rest
    }
}
