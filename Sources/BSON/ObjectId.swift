#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A 12-byte MongoDB ObjectId.
public struct ObjectId: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 12, "an ObjectId has 12 bytes")
        self.bytes = bytes
    }

    /// A new, unique id, as the ObjectId specification builds them: seconds since the epoch (big-endian), five
    /// random bytes chosen once per process, and a counter (big-endian) starting at a random value.
    public static func generate() -> ObjectId {
        let seconds = UInt32(truncatingIfNeeded: Int64(time(nil)))
        let count = ObjectIdCounter.next.add(1, ordering: .relaxed).newValue
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12)
        withUnsafeBytes(of: seconds.bigEndian) { bytes += $0 }
        bytes += ObjectIdCounter.processUnique
        bytes += [UInt8(truncatingIfNeeded: count >> 16), UInt8(truncatingIfNeeded: count >> 8), UInt8(truncatingIfNeeded: count)]
        return ObjectId(bytes: bytes)
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

/// Per-process state of `ObjectId.generate()`.
enum ObjectIdCounter {
    static let processUnique: [UInt8] = (0..<5).map { _ in UInt8.random(in: 0...255) }
    static let next = Atomic<UInt32>(UInt32.random(in: 0...0xFF_FFFF))
}
