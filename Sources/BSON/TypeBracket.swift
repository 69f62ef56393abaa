/// MongoDB's comparison brackets, in its documented BSON comparison order: a query operator such as `$gt`
/// compares within one bracket only (`{_id: {$gt: 5}}` never returns a string `_id`), so keyset pages over `_id`
/// must walk the brackets one at a time. Arrays, regular expressions and `undefined` cannot be `_id`s; JavaScript
/// code and DBPointers can, and are not walked (`unpageableTypeAliases`).
public enum TypeBracket: Int, CaseIterable, Comparable, Sendable {
    case minKey, null, numbers, strings, objects, binaries, objectIds, booleans, dates, timestamps, maxKey

    /// The `$type` aliases that select this bracket.
    public var typeAliases: [String] {
        switch self {
        case .minKey: ["minKey"]
        case .null: ["null"]
        case .numbers: ["number"]
        case .strings: ["string", "symbol"]
        case .objects: ["object"]
        case .binaries: ["binData"]
        case .objectIds: ["objectId"]
        case .booleans: ["bool"]
        case .dates: ["date"]
        case .timestamps: ["timestamp"]
        case .maxKey: ["maxKey"]
        }
    }

    /// Types MongoDB takes as an `_id` that no bracket here walks (the snapshot reports their documents).
    public static let unpageableTypeAliases = ["javascript", "javascriptWithScope", "dbPointer"]

    public var name: String { "\(self)" }

    public init?(name: String) {
        guard let bracket = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = bracket
    }

    /// The bracket a value compares in.
    public init?(of value: BSON) {
        switch value {
        case .minKey: self = .minKey
        case .null: self = .null
        case .int32, .int64, .double, .decimal128: self = .numbers
        case .string: self = .strings
        case .opaque(let type, _) where type == 0x0E: self = .strings  // symbol
        case .document: self = .objects
        case .binary: self = .binaries
        case .objectId: self = .objectIds
        case .bool: self = .booleans
        case .datetime: self = .dates
        case .timestamp: self = .timestamps
        case .maxKey: self = .maxKey
        default: return nil
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// `{_id: {$type: […], $gt: after, $lte: upper}}`: a range inside this bracket.
    public func filter(after: BSON?, upTo upper: BSON?) -> Document {
        var range: Document = ["$type": .array(typeAliases.map(BSON.string))]
        if let after { range.append("$gt", after) }
        if let upper { range.append("$lte", upper) }
        return ["_id": .document(range)]
    }
}
