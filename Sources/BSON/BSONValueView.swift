/// One value of a validated document, read in place: its type code and its encoded bytes, nothing decoded or
/// copied. Valid only inside the `withElements`/`withView` call that lent it (the bytes are borrowed).
///
/// Hot paths (COPY text, schema learning) read scalars straight from the bytes; anything rare goes through
/// `decoded`.
public struct BSONValueView {
    public let type: UInt8
    /// The value's encoding (for a string: length, bytes, NUL; for a document: the whole document).
    public let bytes: UnsafeBufferPointer<UInt8>

    public init(type: UInt8, bytes: UnsafeBufferPointer<UInt8>) {
        self.type = type
        self.bytes = bytes
    }

    public var isNull: Bool { type == 0x0A || type == 0x06 }
    public var isDocument: Bool { type == 0x03 }

    @inline(__always)
    func le<T: FixedWidthInteger>(_ at: Int, as: T.Type = T.self) -> T {
        T(littleEndian: UnsafeRawPointer(bytes.baseAddress! + at).loadUnaligned(as: T.self))
    }

    public var int32: Int32 { le(0) }
    public var int64: Int64 { le(0) }
    public var double: Double { Double(bitPattern: le(0)) }
    public var bool: Bool { bytes[0] != 0 }
    /// A datetime's milliseconds since the epoch.
    public var datetime: Int64 { le(0) }
    public var decimal128: Decimal128 { Decimal128(low: le(0), high: le(8)) }
    /// A string's UTF-8 bytes (no length, no terminator).
    public var utf8: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[4..<(bytes.count - 1)]) }
    /// A binary's data bytes (no length, no subtype).
    public var binaryData: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[5...]) }

    /// The value as a `BSON` (allocates for strings, documents, arrays).
    public var decoded: BSON { BSONDecoder.decodeValue(type: type, ArraySlice(bytes)) }

    /// Validates `bytes` as one whole document (the checks of `Document(bytes:)`) and lends it as a view: spool
    /// records are checked once and then read in place, without copying them first.
    public static func withValidatedDocument<R>(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (BSONValueView) throws -> R) throws -> R {
        try BSONDecoder.validate(bytes, depth: 0)
        return try body(BSONValueView(type: 0x03, bytes: bytes))
    }

    /// The value as a `BSON`, without an intermediate copy for the scalar types keys and versions use.
    public var decodedScalar: BSON {
        switch type {
        case 0x10: .int32(int32)
        case 0x12: .int64(int64)
        case 0x09: .datetime(datetime)
        default: decoded
        }
    }

    /// A document's or array's elements, in order (keys as their UTF-8 bytes).
    public func forEachElement<E: Error>(_ body: (UnsafeBufferPointer<UInt8>, BSONValueView) throws(E) -> Void) throws(E) {
        try Self.forEachElement(inDocument: bytes, body)
    }

    /// Walks the elements of one validated, encoded document.
    static func forEachElement<E: Error>(inDocument b: UnsafeBufferPointer<UInt8>,
                                         _ body: (UnsafeBufferPointer<UInt8>, BSONValueView) throws(E) -> Void) throws(E) {
        var p = 4
        let end = b.count - 1
        while p < end {
            let type = b[p]
            let keyStart = p + 1
            var keyEnd = keyStart
            while b[keyEnd] != 0 { keyEnd += 1 }
            p = keyEnd + 1
            let size = valueSize(type, b, p)
            try body(UnsafeBufferPointer(rebasing: b[keyStart..<keyEnd]), BSONValueView(type: type, bytes: UnsafeBufferPointer(rebasing: b[p..<(p + size)])))
            p += size
        }
    }

    /// The size of a value in a validated document (`BSONDecoder.valueSize` without its checks).
    static func valueSize(_ type: UInt8, _ b: UnsafeBufferPointer<UInt8>, _ p: Int) -> Int {
        func length(_ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 | Int(b[at + 2]) << 16 | Int(b[at + 3]) << 24 }
        switch type {
        case 0x01, 0x09, 0x11, 0x12: return 8
        case 0x02, 0x0D, 0x0E: return 4 + length(p)
        case 0x03, 0x04, 0x0F: return length(p)
        case 0x05: return 5 + length(p)
        case 0x07: return 12
        case 0x08: return 1
        case 0x0B:
            var q = p
            while b[q] != 0 { q += 1 }
            q += 1
            while b[q] != 0 { q += 1 }
            return q + 1 - p
        case 0x0C: return 4 + length(p) + 12
        case 0x10: return 4
        case 0x13: return 16
        default: return 0
        }
    }
}

extension Document {
    /// Lends the document's top level as a view (type 0x03) for the duration of `body`.
    public func withView<R, E: Error>(_ body: (BSONValueView) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = bytes.withUnsafeBufferPointer { buffer in
            do throws(E) {
                return .success(try body(BSONValueView(type: 0x03, bytes: buffer)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

extension BSON {
    /// Lends this value as a view (encoded once for the call): the one code path for values that were decoded.
    public func withView<R, E: Error>(_ body: (BSONValueView) throws(E) -> R) throws(E) -> R {
        var encoded: [UInt8] = []
        BSONEncoder.appendValue(&encoded, self)
        let type = typeCode
        let result: Result<R, E> = encoded.withUnsafeBufferPointer { buffer in
            do throws(E) {
                return .success(try body(BSONValueView(type: type, bytes: buffer)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
