import Foundation

/// Removes secrets from connection strings before they reach a log line, an error or a state file.
public enum Redaction {
    /// `scheme://user:secret@host` → `scheme://user:***@host`; `password=secret` → `password=***`
    /// (conninfo key/value form and URI query parameters alike).
    public static func redact(_ text: String) -> String {
        var out = redactUserInfo(text)
        // `authMechanismProperties` carries MONGODB-AWS's `AWS_SESSION_TOKEN:…`: the whole value goes.
        for key in ["password", "passwd", "pwd", "sslpassword", "tlsCertificateKeyFilePassword", "authMechanismProperties"] {
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

    /// libpq and the MongoDB drivers end the credentials at the last `@` before the host's first `/`; a `?` or an
    /// `@` in an unencoded password is still part of it. A `/` in one ends the authority early: then the first `@`
    /// after a `user:` whose text up to the `/` is not a port closes it. Redacting too much is safe, too little is not.
    private static func redactUserInfo(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return text }
        let rest = text[schemeEnd.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var userInfoEnd = rest[..<slash].lastIndex(of: "@")
        if userInfoEnd == nil, let at = rest.firstIndex(of: "@"), let colon = rest[..<slash].firstIndex(of: ":"),
           !rest[rest.index(after: colon)..<slash].allSatisfy(\.isNumber) {
            userInfoEnd = at
        }
        guard let at = userInfoEnd, let colon = rest[..<at].firstIndex(of: ":") else { return text }
        return String(text[..<rest.startIndex]) + rest[..<colon] + ":***" + text[at...]
    }

    /// `key=value`, `key = value` (libpq allows blanks around `=`) or `key='quoted \' value'` → `key=***`.
    private static func redactKeyValue(_ text: String, key: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let r = rest.range(of: key, options: .caseInsensitive) {
            let boundary = r.lowerBound == rest.startIndex
                || [" ", "?", "&", ";", "\t"].contains(rest[rest.index(before: r.lowerBound)])
            var equals = r.upperBound
            while equals < rest.endIndex, rest[equals] == " " || rest[equals] == "\t" { equals = rest.index(after: equals) }
            guard boundary, equals < rest.endIndex, rest[equals] == "=" else {
                out += rest[..<r.upperBound]
                rest = rest[r.upperBound...]
                continue
            }
            var start = rest.index(after: equals)
            while start < rest.endIndex, rest[start] == " " || rest[start] == "\t" { start = rest.index(after: start) }
            out += rest[..<r.upperBound] + "="
            rest = rest[start...]
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
