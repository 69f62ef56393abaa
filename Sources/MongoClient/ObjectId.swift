internal import CMongoC

/// A 12-byte MongoDB ObjectId.
public struct ObjectId: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 12, "an ObjectId has 12 bytes")
        self.bytes = bytes
    }

    /// A new, unique id (libbson's generator: time, per-process random, counter).
    public static func generate() -> ObjectId {
        var oid = bson_oid_t()
        bson_oid_init(&oid, nil)
        return ObjectId(bytes: withUnsafeBytes(of: oid.bytes) { Array($0) })
    }

    public init?(hex: String) {
        guard hex.count == 24 else { return nil }
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        bytes = out
    }

    /// The smallest id with this creation time (seconds since the epoch); used to split the keyspace.
    public init(timestamp seconds: UInt32) {
        bytes = withUnsafeBytes(of: seconds.bigEndian) { Array($0) } + [UInt8](repeating: 0, count: 8)
    }

    public var timestamp: UInt32 { bytes[0..<4].reduce(0) { $0 << 8 | UInt32($1) } }

    public var description: String { bytes.map { String(format2: $0) }.joined() }

    public static func < (a: ObjectId, b: ObjectId) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

extension String {
    /// Two lower-case hex digits.
    public init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}
