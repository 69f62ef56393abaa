/// One BSON value. Covers every type mongoshift maps (docs/ARCHITECTURE.md, "Types") plus the rest of the spec so nothing is lost
/// when a document passes through.
public enum BSON: Sendable, Hashable {
    case double(Double)
    case string(String)
    case document(Document)
    case array([BSON])
    case binary(BSONBinary)
    case undefined
    case objectId(ObjectId)
    case bool(Bool)
    /// Milliseconds since the Unix epoch, UTC.
    case datetime(Int64)
    case null
    case regex(pattern: String, options: String)
    case int32(Int32)
    case timestamp(BSONTimestamp)
    case int64(Int64)
    case decimal128(Decimal128)
    case minKey
    case maxKey
    /// Types mongoshift does not interpret (JavaScript code, DBPointer, symbol), kept byte for byte.
    case opaque(type: UInt8, bytes: [UInt8])

    public var typeCode: UInt8 {
        switch self {
        case .double: 0x01
        case .string: 0x02
        case .document: 0x03
        case .array: 0x04
        case .binary: 0x05
        case .undefined: 0x06
        case .objectId: 0x07
        case .bool: 0x08
        case .datetime: 0x09
        case .null: 0x0A
        case .regex: 0x0B
        case .int32: 0x10
        case .timestamp: 0x11
        case .int64: 0x12
        case .decimal128: 0x13
        case .minKey: 0xFF
        case .maxKey: 0x7F
        case .opaque(let type, _): type
        }
    }

    public var isNull: Bool {
        switch self {
        case .null, .undefined: true
        default: false
        }
    }

    /// Integer value of int32/int64, for counters and ids.
    public var intValue: Int? {
        switch self {
        case .int32(let v): Int(v)
        case .int64(let v): Int(v)
        case .double(let v) where v == v.rounded() && abs(v) < 9.0e15: Int(v)
        default: nil
        }
    }

    /// The exact value of an int32 or int64.
    public var int64Value: Int64? {
        switch self {
        case .int32(let v): Int64(v)
        case .int64(let v): v
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var documentValue: Document? {
        if case .document(let d) = self { return d }
        return nil
    }
}

public struct BSONBinary: Sendable, Hashable {
    public var subtype: UInt8
    public var data: [UInt8]
    public init(subtype: UInt8 = 0, data: [UInt8]) {
        self.subtype = subtype
        self.data = data
    }
    public static let uuidSubtype: UInt8 = 4
}

/// MongoDB's internal timestamp (oplog position / cluster time): seconds and an ordinal.
public struct BSONTimestamp: Sendable, Hashable, Comparable {
    public var seconds: UInt32
    public var increment: UInt32
    public init(seconds: UInt32, increment: UInt32) {
        self.seconds = seconds
        self.increment = increment
    }
    public static func < (a: Self, b: Self) -> Bool { (a.seconds, a.increment) < (b.seconds, b.increment) }

    /// For people: `2026-12-04T22:10:37Z #3` (the UTC second, then the ordinal within it).
    public var readable: String { "\(ISODate.format(seconds: Int64(seconds))) #\(increment)" }
}

extension BSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) {
        self = Int32(exactly: value).map(BSON.int32) ?? .int64(Int64(value))
    }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}
