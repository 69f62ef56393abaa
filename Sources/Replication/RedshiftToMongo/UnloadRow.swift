import PostgresClient

/// One line of an UNLOAD file (`FORMAT JSON`: one object per row, column names as keys) as a `SourceRow`: every
/// value in the text form the SELECT path reads — strings unescaped, numbers as written, booleans `t`/`f`, nested
/// values (and any value of a SUPER column) as their JSON text; a missing key or `null` is NULL.
///
/// The instance owns one buffer holding every value, freed in `deinit`.
public final class UnloadRow: SourceRow {
    private let storage: UnsafeMutableBufferPointer<UInt8>
    private let spans: [Range<Int>?]
    public var columnCount: Int { spans.count }

    public struct Malformed: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { "malformed UNLOAD line: \(reason)" }
    }

    /// Parses `line` for `columns` (by name, case-insensitively: Redshift folds names to lower case).
    public init(line: UnsafeBufferPointer<UInt8>, columns: [PostgresColumn]) throws {
        var parser = JSONObjectScanner(line)
        let fields = try parser.fields()
        var values: [[UInt8]?] = []
        values.reserveCapacity(columns.count)
        for column in columns {
            guard let field = fields[column.name] ?? fields[column.name.lowercased()] else { values.append(nil); continue }
            let raw = Array(line[field.raw])
            let isJSONColumn = column.typeOID == PostgresType.redshiftSuper || column.typeOID == PostgresType.jsonb || column.typeOID == PostgresType.json
            switch field.kind {
            case .null: values.append(nil)
            case .string(let text): values.append(isJSONColumn ? raw : text)
            case .boolean(let b): values.append(isJSONColumn ? raw : [b ? UInt8(ascii: "t") : UInt8(ascii: "f")])
            case .number, .nested: values.append(raw)
            }
        }
        let total = values.reduce(0) { $0 + ($1?.count ?? 0) }
        storage = .allocate(capacity: max(1, total))
        var spans: [Range<Int>?] = []
        var at = 0
        for value in values {
            guard let value else { spans.append(nil); continue }
            _ = UnsafeMutableBufferPointer(rebasing: storage[at..<(at + value.count)]).initialize(from: value)
            spans.append(at..<(at + value.count))
            at += value.count
        }
        self.spans = spans
    }

    deinit { storage.deallocate() }

    public func isNull(_ column: Int) -> Bool { spans[column] == nil }

    public func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8> {
        guard let span = spans[column] else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(rebasing: UnsafeBufferPointer(storage)[span])
    }

    public func string(_ column: Int) -> String? {
        isNull(column) ? nil : String(decoding: bytes(column), as: UTF8.self)
    }
}

/// Reads the top level of one JSON object: each member's kind, its raw extent, strings unescaped.
struct JSONObjectScanner {
    enum Kind {
        case null
        case boolean(Bool)
        case number
        case string([UInt8])
        case nested
    }

    struct Field {
        var kind: Kind
        var raw: Range<Int>
    }

    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func fields() throws -> [String: Field] {
        var out: [String: Field] = [:]
        skipSpace()
        try expect(UInt8(ascii: "{"))
        skipSpace()
        if peek == UInt8(ascii: "}") { return out }
        while true {
            skipSpace()
            guard case .string(let name) = try value().kind else { throw UnloadRow.Malformed(reason: "a member name is not a string") }
            skipSpace()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            let start = i
            let v = try value()
            out[String(decoding: name, as: UTF8.self)] = Field(kind: v.kind, raw: start..<i)
            skipSpace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "}"))
            return out
        }
    }

    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        guard peek == c else { throw UnloadRow.Malformed(reason: "expected '\(Character(Unicode.Scalar(c)))' at byte \(i)") }
        i += 1
    }

    private mutating func value() throws -> (kind: Kind, end: Int) {
        guard let c = peek else { throw UnloadRow.Malformed(reason: "line ends inside a value") }
        switch c {
        case UInt8(ascii: "\""): return (.string(try string()), i)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            try skipNested()
            return (.nested, i)
        case UInt8(ascii: "t"): try literal("true"); return (.boolean(true), i)
        case UInt8(ascii: "f"): try literal("false"); return (.boolean(false), i)
        case UInt8(ascii: "n"): try literal("null"); return (.null, i)
        default:
            let start = i
            while let d = peek, d == UInt8(ascii: "-") || d == UInt8(ascii: "+") || d == UInt8(ascii: ".") || d == UInt8(ascii: "e")
                || d == UInt8(ascii: "E") || (d >= 0x30 && d <= 0x39) { i += 1 }
            guard i > start else { throw UnloadRow.Malformed(reason: "unexpected byte at \(i)") }
            return (.number, i)
        }
    }

    private mutating func literal(_ word: String) throws {
        for b in word.utf8 { try expect(b) }
    }

    private mutating func string() throws -> [UInt8] {
        try expect(0x22)
        do {
            return try JSONString.read(bytes, at: &i)
        } catch {
            throw UnloadRow.Malformed(reason: error.reason)
        }
    }

    private mutating func skipNested() throws {
        var depth = 0
        while let c = peek {
            switch c {
            case 0x22: _ = try string(); continue
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { i += 1; return }
            default: break
            }
            i += 1
        }
        throw UnloadRow.Malformed(reason: "unterminated object or array")
    }
}
