/// A BSON document, kept in its encoded form: appending is cheap, and the bytes go to libmongoc, the spool and
/// the state store without re-encoding. Field order is preserved.
public struct Document: Sendable, Hashable {
    /// The complete encoding: int32 length, elements, trailing 0.
    public private(set) var bytes: [UInt8]

    public init() {
        bytes = [5, 0, 0, 0, 0]
    }

    /// An empty document with room for `capacity` encoded bytes (hot paths: no regrowth while appending).
    public init(reservingCapacity capacity: Int) {
        bytes = [5, 0, 0, 0, 0]
        bytes.reserveCapacity(capacity)
    }

    /// Wraps an encoded document after validating its structure (lengths, terminators, nesting, UTF-8 keys).
    public init(bytes: [UInt8]) throws {
        try BSONDecoder.validate(bytes[...])
        self.bytes = bytes
    }

    /// Wraps bytes that a BSON library already validated (libbson's replies): no second pass over them.
    public init(trustedBytes bytes: [UInt8]) {
        self.bytes = bytes
    }

    public init(_ elements: KeyValuePairs<String, BSON>) {
        self.init()
        for (key, value) in elements { append(key, value) }
    }

    public init(elements: [(String, BSON)]) {
        self.init()
        for (key, value) in elements { append(key, value) }
    }

    public var isEmpty: Bool { bytes.count <= 5 }
    public var byteCount: Int { bytes.count }

    public mutating func append(_ key: String, _ value: BSON) {
        bytes.removeLast()
        BSONEncoder.appendElement(&bytes, key: key, value: value)
        bytes.append(0)
        BSONEncoder.patchLength(&bytes, at: 0)
    }

    /// Appends a subdocument built in place (avoids building a separate Document and copying it).
    public mutating func appendDocument(_ key: String, _ build: (inout Document) -> Void) {
        var sub = Document()
        build(&sub)
        append(key, .document(sub))
    }

    public subscript(key: String) -> BSON? {
        for (k, v) in self where k == key { return v }
        return nil
    }

    /// A dotted path (`a.b.c`) into nested documents.
    public func value(at path: String) -> BSON? {
        var current: BSON = .document(self)
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard case .document(let doc) = current, let next = doc[String(part)] else { return nil }
            current = next
        }
        return current
    }

    /// Whether a key at any depth is empty: what libmongoc refuses by default before sending, checked here in one
    /// walk over the bytes (no key or value decoded).
    public var containsEmptyKey: Bool {
        struct Found: Error {}
        func check(_ document: UnsafeBufferPointer<UInt8>) throws(Found) {
            try BSONValueView.forEachElement(inDocument: document) { (key, value) throws(Found) in
                if key.isEmpty { throw Found() }
                switch value.type {
                case 0x03, 0x04: try check(value.bytes)
                case 0x0F:
                    // Code with scope: its scope document is checked too (when its lengths hold together).
                    guard value.bytes.count >= 8 else { break }
                    let scope = 8 + Int(value.le(4, as: UInt32.self))
                    if scope + 5 <= value.bytes.count { try check(UnsafeBufferPointer(rebasing: value.bytes[scope...])) }
                default: break
                }
            }
        }
        do {
            try bytes.withUnsafeBufferPointer { (buffer) throws(Found) in try check(buffer) }
            return false
        } catch {
            return true
        }
    }

    public var keys: [String] { map(\.0) }
    public var elements: [(String, BSON)] { Array(self) }

    /// A copy without the given top-level keys.
    public func removing(_ names: Set<String>) -> Document {
        Document(elements: filter { !names.contains($0.0) })
    }
}

extension Document: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, BSON)...) {
        self.init(elements: elements)
    }
}

extension Document: Sequence {
    public struct Iterator: IteratorProtocol {
        var decoder: BSONDecoder
        public mutating func next() -> (String, BSON)? { decoder.nextElement() }
    }
    public func makeIterator() -> Iterator { Iterator(decoder: BSONDecoder(bytes[...])) }
}

extension Document: CustomStringConvertible {
    /// Relaxed extended JSON, as mongosh prints it.
    public var description: String { ExtendedJSON.relaxed(self) }
}

enum BSONEncoder {
    static func appendElement(_ out: inout [UInt8], key: String, value: BSON) {
        out.append(value.typeCode)
        appendCString(&out, key)
        appendValue(&out, value)
    }

    static func appendValue(_ out: inout [UInt8], _ value: BSON) {
        switch value {
        case .double(let d): appendLE(&out, d.bitPattern)
        case .string(let s): appendString(&out, s)
        case .document(let d): out.append(contentsOf: d.bytes)
        case .array(let items):
            let start = out.count
            out.append(contentsOf: [0, 0, 0, 0])
            for (index, item) in items.enumerated() { appendElement(&out, key: String(index), value: item) }
            out.append(0)
            patchLength(&out, at: start)
        case .binary(let b):
            appendLE(&out, UInt32(b.data.count))
            out.append(b.subtype)
            out.append(contentsOf: b.data)
        case .undefined, .null, .minKey, .maxKey: break
        case .objectId(let oid): out.append(contentsOf: oid.bytes)
        case .bool(let b): out.append(b ? 1 : 0)
        case .datetime(let ms): appendLE(&out, UInt64(bitPattern: ms))
        case .regex(let pattern, let options):
            appendCString(&out, pattern)
            appendCString(&out, options)
        case .int32(let i): appendLE(&out, UInt32(bitPattern: i))
        case .timestamp(let t):
            appendLE(&out, t.increment)
            appendLE(&out, t.seconds)
        case .int64(let i): appendLE(&out, UInt64(bitPattern: i))
        case .decimal128(let d):
            appendLE(&out, d.low)
            appendLE(&out, d.high)
        case .opaque(_, let bytes): out.append(contentsOf: bytes)
        }
    }

    static func appendString(_ out: inout [UInt8], _ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            appendLE(&out, UInt32(utf8.count + 1))
            out.append(contentsOf: utf8)
        }
        out.append(0)
    }

    /// Keys are C strings: an embedded NUL would end them early, so it is dropped (such keys are rejected upstream).
    static func appendCString(_ out: inout [UInt8], _ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            for byte in utf8 where byte != 0 { out.append(byte) }
        }
        out.append(0)
    }

    @inline(__always)
    static func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    static func patchLength(_ out: inout [UInt8], at start: Int) {
        let length = UInt32(out.count - start).littleEndian
        withUnsafeBytes(of: length) { raw in
            for i in 0..<4 { out[start + i] = raw[i] }
        }
    }
}

public struct BSONError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { "invalid BSON: \(message)" }
}

struct BSONDecoder {
    let bytes: ArraySlice<UInt8>
    var position: Int
    let end: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex + 4
        self.end = bytes.endIndex - 1
    }

    /// Structural validation: every length in range, every terminator present, UTF-8 strings, known types.
    static func validate(_ bytes: ArraySlice<UInt8>, depth: Int = 0) throws {
        try bytes.withUnsafeBufferPointer { try validate($0, depth: depth) }
    }

    /// `validate` over the bytes in place (a spool segment's records are checked this way on every read): every
    /// index is checked against the document's end before it is read.
    static func validate(_ b: UnsafeBufferPointer<UInt8>, depth: Int) throws {
        guard depth < 100 else { throw BSONError(message: "nesting deeper than 100") }
        guard b.count >= 5 else { throw BSONError(message: "document shorter than 5 bytes") }
        let declared = Int(readLE(b, 0) as UInt32)
        guard declared == b.count else { throw BSONError(message: "length \(declared) but \(b.count) bytes") }
        guard b[b.count - 1] == 0 else { throw BSONError(message: "missing terminator") }
        var p = 4
        let end = b.count - 1
        while p < end {
            let type = b[p]
            p += 1
            guard let keyEnd = terminator(b, from: p, end: end) else { throw BSONError(message: "unterminated key") }
            p = keyEnd + 1
            let size = try valueSize(type: type, b, at: p, end: end)
            guard size >= 0, size <= end - p else { throw BSONError(message: "value overruns document") }
            switch type {
            case 0x03, 0x04: try validate(UnsafeBufferPointer(rebasing: b[p..<(p + size)]), depth: depth + 1)
            case 0x02:
                guard isUTF8(UnsafeBufferPointer(rebasing: b[(p + 4)..<(p + size - 1)])) else { throw BSONError(message: "string is not valid UTF-8") }
            default: break
            }
            p += size
        }
        guard p == end else { throw BSONError(message: "trailing bytes") }
    }

    /// The index of the first NUL in `b[from..<end]`.
    @inline(__always)
    static func terminator(_ b: UnsafeBufferPointer<UInt8>, from: Int, end: Int) -> Int? {
        var i = from
        while i < end {
            if b[i] == 0 { return i }
            i += 1
        }
        return nil
    }

    /// ASCII (the common case) without building a String; anything else by the standard library's validator.
    static func isUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var high: UInt8 = 0
        for byte in bytes { high |= byte }
        return high < 0x80 || String(validating: bytes, as: UTF8.self) != nil
    }

    static func valueSize(type: UInt8, bytes: ArraySlice<UInt8>, at p: Int, end: Int) throws -> Int {
        let base = bytes.startIndex
        return try bytes.withUnsafeBufferPointer { try valueSize(type: type, $0, at: p - base, end: end - base) }
    }

    /// The size of the value of `type` at `p`; its own lengths are checked against `end` (the caller checks that
    /// the value ends by `end`).
    static func valueSize(type: UInt8, _ b: UnsafeBufferPointer<UInt8>, at p: Int, end: Int) throws -> Int {
        func need(_ n: Int) throws { if p + n > end { throw BSONError(message: "truncated value") } }
        switch type {
        case 0x01, 0x09, 0x11, 0x12: try need(8); return 8
        case 0x02, 0x0D, 0x0E:
            try need(4)
            let n = Int(readLE(b, p) as UInt32)
            guard n >= 1, p + 4 + n <= end, b[p + 3 + n] == 0 else { throw BSONError(message: "bad string length") }
            return 4 + n
        case 0x03, 0x04:
            try need(4)
            let n = Int(readLE(b, p) as UInt32)
            guard n >= 5, p + n <= end else { throw BSONError(message: "bad document length") }
            return n
        case 0x05:
            try need(5)
            let n = Int(readLE(b, p) as UInt32)
            guard n >= 0, p + 5 + n <= end else { throw BSONError(message: "bad binary length") }
            return 5 + n
        case 0x06, 0x0A, 0x7F, 0xFF: return 0
        case 0x07: try need(12); return 12
        case 0x08: try need(1); return 1
        case 0x0B:
            guard let a = terminator(b, from: p, end: end), let z = terminator(b, from: a + 1, end: end) else {
                throw BSONError(message: "bad regex")
            }
            return z + 1 - p
        case 0x0C:
            try need(4)
            let n = Int(readLE(b, p) as UInt32)
            return 4 + n + 12
        case 0x0F:
            try need(4)
            return Int(readLE(b, p) as UInt32)
        case 0x10: try need(4); return 4
        case 0x13: try need(16); return 16
        default: throw BSONError(message: "unknown type 0x\(String(type, radix: 16))")
        }
    }

    /// A little-endian integer at `at` (the caller has checked that its bytes are there).
    @inline(__always)
    static func readLE<T: FixedWidthInteger>(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> T {
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[at..<(at + MemoryLayout<T>.size)])) }
        return T(littleEndian: value)
    }

    @inline(__always)
    static func readLE<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, _ at: Int) -> T {
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<MemoryLayout<T>.size { raw[i] = bytes[at + i] }
        }
        return T(littleEndian: value)
    }

    /// Decodes the next element. Assumes validated bytes (all Documents are validated or self-built).
    mutating func nextElement() -> (String, BSON)? {
        guard position < end else { return nil }
        let type = bytes[position]
        position += 1
        let keyEnd = bytes[position..<end].firstIndex(of: 0)!
        let key = String(decoding: bytes[position..<keyEnd], as: UTF8.self)
        position = keyEnd + 1
        let size = (try? Self.valueSize(type: type, bytes: bytes, at: position, end: end)) ?? (end - position)
        let value = Self.decodeValue(type: type, bytes[position..<(position + size)])
        position += size
        return (key, value)
    }

    static func decodeValue(type: UInt8, _ v: ArraySlice<UInt8>) -> BSON {
        let p = v.startIndex
        switch type {
        case 0x01: return .double(Double(bitPattern: readLE(v, p)))
        case 0x02: return .string(String(decoding: v[(p + 4)..<(v.endIndex - 1)], as: UTF8.self))
        case 0x03: return .document(Document(trustedBytes: Array(v)))
        case 0x04:
            var items: [BSON] = []
            var d = BSONDecoder(v)
            while let (_, item) = d.nextElement() { items.append(item) }
            return .array(items)
        case 0x05:
            return .binary(BSONBinary(subtype: v[p + 4], data: Array(v[(p + 5)...])))
        case 0x06: return .undefined
        case 0x07: return .objectId(ObjectId(bytes: Array(v)))
        case 0x08: return .bool(v[p] != 0)
        case 0x09: return .datetime(Int64(bitPattern: readLE(v, p)))
        case 0x0A: return .null
        case 0x0B:
            let a = v.firstIndex(of: 0)!
            return .regex(pattern: String(decoding: v[p..<a], as: UTF8.self),
                          options: String(decoding: v[(a + 1)..<(v.endIndex - 1)], as: UTF8.self))
        case 0x10: return .int32(Int32(bitPattern: readLE(v, p)))
        case 0x11: return .timestamp(BSONTimestamp(seconds: readLE(v, p + 4), increment: readLE(v, p)))
        case 0x12: return .int64(Int64(bitPattern: readLE(v, p)))
        case 0x13: return .decimal128(Decimal128(low: readLE(v, p), high: readLE(v, p + 8)))
        case 0x7F: return .maxKey
        case 0xFF: return .minKey
        default: return .opaque(type: type, bytes: Array(v))
        }
    }
}
