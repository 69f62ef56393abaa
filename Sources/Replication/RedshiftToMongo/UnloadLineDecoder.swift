import PostgresClient

/// Decodes the lines of an UNLOAD file (`FORMAT JSON`: one object per row, column names as keys) and is the
/// `SourceRow` of the line decoded last: every value in the text form the SELECT path reads — strings unescaped,
/// numbers as written, booleans `t`/`f`, nested values (and any value of a SUPER or JSON column) as their JSON
/// text; a missing key or `null` is NULL. Values are written into one buffer reused from line to line, so a
/// line costs no allocation (docs/ARCHITECTURE.md, "Snapshot through UNLOAD").
///
/// One decoder per file being spooled; it owns its buffer. A row's bytes are valid until the next `decode`.
public final class UnloadLineDecoder: SourceRow {
    /// Column names as UNLOAD writes them (Redshift folds names to lower case) and as the catalog has them.
    private let folded: [[UInt8]]
    private let exact: [[UInt8]]
    private let jsonColumn: [Bool]
    private var values: ValueBuffer
    private var spans: [Range<Int>?]
    public var columnCount: Int { spans.count }

    public struct Malformed: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { "malformed UNLOAD line: \(reason)" }
    }

    public init(columns: [PostgresColumn]) {
        exact = columns.map { Array($0.name.utf8) }
        folded = columns.map { Array($0.name.lowercased().utf8) }
        jsonColumn = columns.map {
            $0.typeOID == PostgresType.redshiftSuper || $0.typeOID == PostgresType.jsonb || $0.typeOID == PostgresType.json
        }
        values = ValueBuffer()
        spans = Array(repeating: nil, count: columns.count)
    }

    deinit { values.free() }

    /// Reads one line; its values replace the previous line's.
    public func decode(_ line: UnsafeBufferPointer<UInt8>) throws(Malformed) {
        values.count = 0
        for i in spans.indices { spans[i] = nil }
        var scanner = JSONObjectScanner(line)
        var expected = 0
        try scanner.forEachMember { (name, member) throws(Malformed) in
            // UNLOAD writes the columns in order: the next one is tried first.
            guard let column = column(named: name, from: expected) else { return }
            expected = column + 1
            let start = values.count
            switch member.kind {
            case .null:
                spans[column] = nil
                return
            case .string(let body, let escaped):
                if jsonColumn[column] {
                    values.append(UnsafeBufferPointer(rebasing: line[member.raw]))
                } else if escaped {
                    var p = body.lowerBound
                    do throws(JSONString.Malformed) { try JSONString.read(line, at: &p, into: &values) } catch { throw Malformed(reason: error.reason) }
                } else {
                    values.append(UnsafeBufferPointer(rebasing: line[body]))
                }
            case .boolean(let b):
                if jsonColumn[column] { values.append(UnsafeBufferPointer(rebasing: line[member.raw])) }
                else { values.append(b ? UInt8(ascii: "t") : UInt8(ascii: "f")) }
            case .number, .nested:
                values.append(UnsafeBufferPointer(rebasing: line[member.raw]))
            }
            spans[column] = start..<values.count
        }
    }

    private func column(named name: UnsafeBufferPointer<UInt8>, from hint: Int) -> Int? {
        func matches(_ i: Int) -> Bool { name.elementsEqual(folded[i]) || name.elementsEqual(exact[i]) }
        if hint < folded.count, matches(hint) { return hint }
        return folded.indices.first(where: matches)
    }

    public func isNull(_ column: Int) -> Bool { spans[column] == nil }

    public func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8> {
        guard let span = spans[column] else { return UnsafeBufferPointer(start: nil, count: 0) }
        return values.bytes(span)
    }

    public func string(_ column: Int) -> String? {
        isNull(column) ? nil : String(decoding: bytes(column), as: UTF8.self)
    }
}

/// The decoder's value bytes: one allocation, grown when a line needs more, freed with the decoder.
private struct ValueBuffer: TextSink {
    private var storage = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 4096)
    var count = 0

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        reserve(bytes.count)
        if let base = bytes.baseAddress { (storage.baseAddress! + count).update(from: base, count: bytes.count) }
        count += bytes.count
    }

    mutating func append(_ byte: UInt8) {
        reserve(1)
        storage[count] = byte
        count += 1
    }

    private mutating func reserve(_ n: Int) {
        guard count + n > storage.count else { return }
        let grown = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(storage.count * 2, count + n))
        grown.baseAddress!.update(from: storage.baseAddress!, count: count)
        storage.deallocate()
        storage = grown
    }

    func bytes(_ span: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: UnsafeBufferPointer(storage)[span]) }

    func free() { storage.deallocate() }
}

/// Reads the top level of one JSON object: each member's name (unescaped only when it has escapes), its kind
/// and raw extent.
struct JSONObjectScanner {
    enum Kind {
        case null
        case boolean(Bool)
        case number
        /// The string's body between its quotes; `escaped`: it has escapes to decode.
        case string(body: Range<Int>, escaped: Bool)
        case nested
    }

    struct Member {
        var kind: Kind
        var raw: Range<Int>
    }

    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func forEachMember(_ body: (UnsafeBufferPointer<UInt8>, Member) throws(UnloadLineDecoder.Malformed) -> Void) throws(UnloadLineDecoder.Malformed) {
        skipSpace()
        try expect(UInt8(ascii: "{"))
        skipSpace()
        if peek == UInt8(ascii: "}") { return }
        var unescapedName = PlainText()
        while true {
            skipSpace()
            guard case .string(let nameBody, let escaped) = try value() else { throw .init(reason: "a member name is not a string") }
            skipSpace()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            let start = i
            let kind = try value()
            let member = Member(kind: kind, raw: start..<i)
            if escaped {
                unescapedName.bytes.removeAll(keepingCapacity: true)
                var p = nameBody.lowerBound
                do throws(JSONString.Malformed) { try JSONString.read(bytes, at: &p, into: &unescapedName) } catch { throw .init(reason: error.reason) }
                try unescapedName.bytes.withUnsafeBufferPointer { (name) throws(UnloadLineDecoder.Malformed) in try body(name, member) }
            } else {
                try body(UnsafeBufferPointer(rebasing: bytes[nameBody]), member)
            }
            skipSpace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "}"))
            return
        }
    }

    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws(UnloadLineDecoder.Malformed) {
        guard peek == c else { throw .init(reason: "expected '\(Character(Unicode.Scalar(c)))' at byte \(i)") }
        i += 1
    }

    private mutating func value() throws(UnloadLineDecoder.Malformed) -> Kind {
        guard let c = peek else { throw .init(reason: "line ends inside a value") }
        switch c {
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            try skipNested()
            return .nested
        case UInt8(ascii: "t"): try literal("true"); return .boolean(true)
        case UInt8(ascii: "f"): try literal("false"); return .boolean(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            let start = i
            while let d = peek, d == UInt8(ascii: "-") || d == UInt8(ascii: "+") || d == UInt8(ascii: ".") || d == UInt8(ascii: "e")
                || d == UInt8(ascii: "E") || (d >= 0x30 && d <= 0x39) { i += 1 }
            guard i > start else { throw .init(reason: "unexpected byte at \(i)") }
            return .number
        }
    }

    private mutating func literal(_ word: StaticString) throws(UnloadLineDecoder.Malformed) {
        for b in UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount) { try expect(b) }
    }

    /// Steps over a string, checking its escapes; returns its body.
    private mutating func string() throws(UnloadLineDecoder.Malformed) -> Kind {
        try expect(0x22)
        let start = i
        var escaped = false
        while let c = peek {
            if c == 0x22 { i += 1; return .string(body: start..<(i - 1), escaped: escaped) }
            if c == UInt8(ascii: "\\") {
                escaped = true
                // Validated where it is decoded (values) or here (names and nested text): step over the escape.
                i += 2
                continue
            }
            i += 1
        }
        throw .init(reason: "unterminated string")
    }

    private mutating func skipNested() throws(UnloadLineDecoder.Malformed) {
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
        throw .init(reason: "unterminated object or array")
    }
}
