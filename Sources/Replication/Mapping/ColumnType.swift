import BSON

/// A target column type and the lattice values widen along (docs/ARCHITECTURE.md, "Types"):
/// `integer → bigint → decimal / double → varchar`, with `varchar(n)` growing to the widest value seen.
public enum ColumnType: Sendable, Hashable, CustomStringConvertible {
    case boolean
    case integer
    case bigint
    /// decimal(38, scale)
    case decimal(scale: Int)
    case double
    case timestamp
    /// ObjectId hex.
    case char24
    case varchar(Int)
    /// SUPER (redshift) / jsonb (postgres): nested documents and arrays.
    case nested
    /// VARBYTE(n) (redshift; n bytes, 64,000 or 1,024,000) / bytea (postgres).
    case binary(Int)

    public static let maxVarchar = 65_535
    /// Redshift VARBYTE: 64,000 bytes without a length (the width binary columns start at), 1,024,000 at most.
    public static let defaultVarbyte = 64_000
    public static let maxVarbyte = 1_024_000

    /// The type a value asks for, read from its bytes; nil for null/undefined (no information). MinKey and MaxKey
    /// are text (`{"$minKey":1}`), as they are as `_id`s: no other type holds them.
    public static func of(_ value: BSONValueView) -> ColumnType? {
        switch value.type {
        case 0x0A, 0x06: return nil
        case 0x7F, 0xFF: return .varchar(16)
        case 0x08: return .boolean
        case 0x10: return .integer
        case 0x12, 0x11: return .bigint
        case 0x01: return .double
        case 0x13:
            let d = value.decimal128
            guard let scale = decimalScale(d) else { return .varchar(width(for: d.description.utf8.count)) }
            return .decimal(scale: scale)
        case 0x09: return .timestamp
        case 0x07: return .char24
        case 0x02: return .varchar(width(for: value.utf8.count))
        case 0x03, 0x04: return .nested
        case 0x05: return .binary(value.binaryData.count <= defaultVarbyte ? defaultVarbyte : maxVarbyte)
        default: return .varchar(256)
        }
    }

    /// The type an `_id` value asks for: like any value, except that a key column holds every `_id` as a value
    /// of its own (`KeyText`): a document, null, MinKey or MaxKey `_id` is text (a key column must compare with
    /// `=` and sort, which SUPER/jsonb do not, and never holds NULL), and a text column is as wide as the key text.
    /// A double `_id` is text too (a DOUBLE key column merges int64 keys beyond 2^53 once integers join it, and
    /// Redshift prints doubles with 15 digits, so its rows could not be converted to key text exactly), and so is
    /// a BSON Timestamp (a bigint column would hold it as a number, and convert it as one).
    public static func ofKey(_ value: BSONValueView) -> ColumnType {
        if value.type == 0x11 { return .varchar(64) }
        // The usual text key is its own key text: its width from its length, as any string's (this runs for
        // every document).
        if value.type == 0x02 && !KeyText.isTagged(value.utf8) { return .varchar(width(for: value.utf8.count)) }
        switch of(value) {
        case .nested?, .varchar?, .double?, nil:
            var plain = PlainText()
            KeyText.writeTop(value, to: &plain)
            return .varchar(width(for: plain.bytes.count))
        case let type?:
            return type
        }
    }

    /// Widening for the `_id` column (`KeyText`): never to SUPER/jsonb; text made from another type is at least
    /// 256 bytes wide, room for any tagged scalar.
    public func widenedKey(with other: ColumnType) -> ColumnType {
        let wide = widened(with: other)
        guard case .varchar(let n) = wide else { return wide == .nested ? .varchar(Self.maxVarchar) : wide }
        if case .varchar = self, case .varchar = other { return wide }
        return .varchar(min(max(n, 256), Self.maxVarchar))
    }

    /// Decimal columns are decimal(38, s) with s ≤ 18, and hold values of at most 20 integer digits (room for any
    /// int64): then any two of them widen to decimal(38, max scale) without an overflow — a column's type says
    /// nothing of its values' sizes, so a scale raised past 38 minus their integer digits failed the load (22003)
    /// and the stream. Decimals beyond that are text (exact).
    public static let maxDecimalScale = 18
    public static let maxDecimalIntegerDigits = 38 - maxDecimalScale

    /// The scale of decimal(38, s) that holds the value exactly: finite, scale ≤ 18, at most 20 integer digits.
    /// From the value's parts, as its canonical text would say (no String per value: this runs for every decimal
    /// of every document): only plain notation qualifies, and its digits count the leading `0.` and zeros.
    static func decimalScale(_ d: Decimal128) -> Int? {
        guard !d.isNaN && !d.isInfinite else { return nil }
        let (coefficient, exponent) = d.parts
        var digits = 1
        var rest = coefficient
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        // Decimal128.description: plain notation when exponent ≤ 0 and the adjusted exponent ≥ -6.
        guard exponent <= 0, exponent + digits - 1 >= -6 else { return nil }
        let point = digits + exponent
        let textDigits = exponent == 0 || point > 0 ? digits : 1 - point + digits
        let scale = -exponent
        guard textDigits <= 38, scale <= maxDecimalScale, max(0, point) <= maxDecimalIntegerDigits else { return nil }
        return scale
    }

    /// VARCHAR widths grow in steps (16, 64, 256, 1024, ... 65,535) so a stream does not ALTER on every new maximum.
    public static func width(for bytes: Int) -> Int {
        var w = 16
        while w < bytes { w *= 4 }
        return min(w, maxVarchar)
    }

    /// The narrowest type that holds values of both types without loss.
    public func widened(with other: ColumnType) -> ColumnType {
        switch (self, other) {
        case _ where self == other: return self
        case (.integer, .bigint), (.bigint, .integer): return .bigint
        case (.integer, .double), (.double, .integer), (.bigint, .double), (.double, .bigint): return .double
        case (.integer, .decimal(let s)), (.decimal(let s), .integer), (.bigint, .decimal(let s)), (.decimal(let s), .bigint):
            // An int64 has 19 digits: within the 20 of a decimal column of scale ≤ 18 (one of an older version's
            // larger scales becomes text).
            return s <= Self.maxDecimalScale ? .decimal(scale: s) : .varchar(64)
        case (.decimal(let a), .decimal(let b)):
            return max(a, b) <= Self.maxDecimalScale ? .decimal(scale: max(a, b)) : .varchar(64)
        case (.varchar(let a), .varchar(let b)): return .varchar(max(a, b))
        case (.binary(let a), .binary(let b)): return .binary(max(a, b))
        case (.nested, _), (_, .nested): return .nested
        default:
            return .varchar(max(textWidth, other.textWidth))
        }
    }

    /// Width of the text form of any value of this type (for widening to varchar).
    var textWidth: Int {
        switch self {
        case .boolean: 16
        case .integer, .bigint, .double, .timestamp, .char24: 64
        case .decimal: 64
        case .varchar(let n): n
        case .nested, .binary: Self.maxVarchar
        }
    }

    /// A column's type as `information_schema.columns` shows it (`data_type`, `character_maximum_length`,
    /// `numeric_scale`) on PostgreSQL and Redshift; nil for a type mongoshift does not make.
    public init?(catalogType dataType: String, length: Int?, scale: Int?) {
        switch dataType {
        case "boolean": self = .boolean
        case "integer": self = .integer
        case "bigint": self = .bigint
        case "double precision": self = .double
        case "numeric": self = .decimal(scale: scale ?? 0)
        case "timestamp without time zone": self = .timestamp
        case "character" where length == 24: self = .char24
        case "character varying": self = .varchar(length ?? Self.maxVarchar)
        case "text": self = .varchar(Self.maxVarchar)
        case "jsonb", "super": self = .nested
        // PostgreSQL's bytea has no length: the widest, which every binary fits.
        case "bytea": self = .binary(Self.maxVarbyte)
        case "binary varying", "varbyte": self = .binary(length ?? Self.defaultVarbyte)
        default: return nil
        }
    }

    public func sql(_ dialect: SQLDialect) -> String {
        switch self {
        case .boolean: "boolean"
        case .integer: "integer"
        case .bigint: "bigint"
        case .decimal(let s): "decimal(38,\(s))"
        case .double: "double precision"
        case .timestamp: "timestamp"
        case .char24: "char(24)"
        case .varchar(let n): "varchar(\(n))"
        case .nested: dialect == .redshift ? "super" : "jsonb"
        case .binary(let n): dialect == .redshift ? "varbyte(\(n))" : "bytea"
        }
    }

    /// Persisted form in the state store.
    public var description: String {
        switch self {
        case .boolean: "boolean"
        case .integer: "integer"
        case .bigint: "bigint"
        case .decimal(let s): "decimal:\(s)"
        case .double: "double"
        case .timestamp: "timestamp"
        case .char24: "char24"
        case .varchar(let n): "varchar:\(n)"
        case .nested: "nested"
        case .binary(let n): "binary:\(n)"
        }
    }

    public init?(persisted text: String) {
        let parts = text.split(separator: ":")
        switch parts.first {
        case "boolean": self = .boolean
        case "integer": self = .integer
        case "bigint": self = .bigint
        case "decimal": self = .decimal(scale: Int(parts.last ?? "0") ?? 0)
        case "double": self = .double
        case "timestamp": self = .timestamp
        case "char24": self = .char24
        case "varchar": self = .varchar(Int(parts.last ?? "16") ?? 16)
        case "nested": self = .nested
        case "binary": self = .binary(parts.count > 1 ? Int(parts.last!) ?? Self.defaultVarbyte : Self.defaultVarbyte)
        default: return nil
        }
    }

    /// Only VARCHAR growth is an in-place ALTER on Redshift; anything else needs a column swap.
    func canAlterInPlace(to new: ColumnType, dialect: SQLDialect) -> Bool {
        if dialect == .postgres { return true }
        if case .varchar = self, case .varchar = new { return true }
        return false
    }
}
