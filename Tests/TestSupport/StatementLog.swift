import Foundation

/// The Redshift stand-in's statement log (`statements.jsonl`): every statement it received, whether it accepted it.
public struct StatementLog {
    public struct Entry: Decodable {
        public var session: Int
        public var application: String?
        public var sql: String
        public var ok: Bool
        public var error: String?
    }

    public let path: String

    public init(path: String) { self.path = path }

    /// The file's size now: entries after it are a test's own.
    public var offset: UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? UInt64) ?? 0
    }

    /// Entries written after `offset` by sessions of `application`.
    public func entries(after offset: UInt64 = 0, application: String = "mongoshift") -> [Entry] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        let data = handle.readDataToEndOfFile()
        let decoder = JSONDecoder()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(Entry.self, from: $0) }
            .filter { $0.application == application }
    }

    /// Statements of `application` the stand-in refused after `offset`, except serialization conflicts (1023),
    /// which Redshift raises by design and the product retries.
    public func refusals(after offset: UInt64, application: String = "mongoshift") -> [String] {
        entries(after: offset, application: application)
            .filter { !$0.ok && !($0.error ?? "").hasPrefix("1023") }
            .map { "\($0.sql.prefix(300)) → \($0.error ?? "")" }
    }

    /// A statement's shape: literals and numbers replaced, whitespace collapsed, repeated VALUES tuples folded.
    public static func shape(_ sql: String) -> String {
        var s = sql.replacingOccurrences(of: #"'([^']|'')*'"#, with: "?", options: .regularExpression)
        s = s.replacingOccurrences(of: #"\$[0-9]+"#, with: "$", options: .regularExpression)
        s = s.replacingOccurrences(of: #"\b[0-9]+(\.[0-9]+)?\b"#, with: "0", options: .regularExpression)
        s = s.replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
        s = s.replacingOccurrences(of: #"(\([^()]*\))(, \([^()]*\))+"#, with: "$1, …", options: .regularExpression)
        s = s.replacingOccurrences(of: #""[a-z]+_[0-9]+_[0-9]+"#, with: "\"t", options: .regularExpression)
        return s.trimmingCharacters(in: .whitespaces)
    }
}
