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
