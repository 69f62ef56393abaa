import BSON
import Foundation

/// BSON values as the text a PostgreSQL/Redshift column of a given type accepts (bound parameters, COPY).
public enum ValueText {
    /// A value the target column cannot hold: too many bytes, or (`reason`) out of the type's range.
    public struct TooLarge: Error, CustomStringConvertible, Sendable {
        public var column: String
        public var bytes: Int
        public var limit: Int
        public var reason: String?
        public init(column: String, bytes: Int, limit: Int, reason: String? = nil) {
            self.column = column
            self.bytes = bytes
            self.limit = limit
            self.reason = reason
        }
        public var description: String {
            if let reason { return "column \(column): \(reason)" }
            return "column \(column): value of \(bytes) bytes exceeds the \(limit)-byte limit"
        }
    }

    /// TIMESTAMP's range on PostgreSQL and Redshift: 4714-11-24 BC to 294276-12-31 AD, in ms since the epoch.
    public static let timestampRange: ClosedRange<Int64> = -210_866_803_200_000...9_224_318_015_999_999

    /// Redshift limits: VARCHAR 65,535 bytes; SUPER 16 MiB per value; VARBYTE 1,024,000 bytes.
    public static let superLimit = 16 * 1024 * 1024
    /// A string inside a SUPER value: 65,535 bytes (Redshift's default).
    public static let superStringLimit = 65_535
    public static let varbyteLimit = 1_024_000

    public static func text(_ value: BSON, as type: ColumnType, column: String) throws(TooLarge) -> String {
        var plain = PlainText()
        try write(value, as: type, column: column, to: &plain)
        return String(decoding: plain.bytes, as: UTF8.self)
    }

    /// `write` for a decoded value.
    public static func write<Sink: TextSink>(_ value: BSON, as type: ColumnType, column: String, byteaPrefix: Bool = false,
                                             to sink: inout Sink) throws(TooLarge) {
        try value.withView { (view) throws(TooLarge) in try write(view, as: type, column: column, byteaPrefix: byteaPrefix, to: &sink) }
    }

    /// Writes the text of `value` for a column of `type` into `sink` (a parameter's bytes, or COPY text escaped as
    /// it goes), read from the value's bytes — no String or `BSON` for the common scalars. Throws before writing
    /// anything when the value does not fit. `byteaPrefix`: PostgreSQL bytea input wants `\x` before the hex
    /// (Redshift's FROM_HEX does not).
    public static func write<Sink: TextSink>(_ value: BSONValueView, as type: ColumnType, column: String, byteaPrefix: Bool = false,
                                             to sink: inout Sink) throws(TooLarge) {
        switch (type, value.type) {
        case (.nested, _):
            if containsNUL(in: value) { throw nulCharacter(column) }
            // JSON is at most 6 bytes per BSON byte (a control character escaped): only a value that large is
            // measured before it is written.
            if value.bytes.count * 6 + 64 > superLimit {
                let json = plainJSON(value.decoded)
                if json.utf8.count > superLimit { throw TooLarge(column: column, bytes: json.utf8.count, limit: superLimit) }
                sink.append(json)
            } else {
                writeJSON(value, to: &sink)
            }
        case (.binary(let n), 0x05):
            let data = value.binaryData
            let limit = min(n, varbyteLimit)
            if data.count > limit { throw TooLarge(column: column, bytes: data.count, limit: limit) }
            if byteaPrefix { sink.append("\\x" as StaticString) }
            sink.appendHex(data)
        case (.varchar(let n), 0x02):
            if hasNUL(value.utf8) { throw nulCharacter(column) }
            let bytes = value.utf8.count
            if bytes > ColumnType.maxVarchar { throw TooLarge(column: column, bytes: bytes, limit: ColumnType.maxVarchar) }
            if bytes > n { throw TooLarge(column: column, bytes: bytes, limit: n) }
            sink.append(value.utf8)
        case (.varchar(let n), _):
            let s = scalarText(value.decoded)
            let bytes = s.utf8.count
            if bytes > ColumnType.maxVarchar { throw TooLarge(column: column, bytes: bytes, limit: ColumnType.maxVarchar) }
            if bytes > n { throw TooLarge(column: column, bytes: bytes, limit: n) }
            sink.append(s)
        case (.timestamp, 0x09):
            let ms = value.datetime
            if !timestampRange.contains(ms) {
                throw TooLarge(column: column, bytes: 0, limit: 0, reason: "date \(ms) ms since 1970 is out of TIMESTAMP's range (4714 BC to 294276 AD)")
            }
            writeTimestamp(ms, to: &sink)
        case (_, 0x08):
            sink.append(value.bool ? "true" as StaticString : "false")
        case (_, 0x10):
            sink.appendDecimal(Int64(value.int32))
        case (_, 0x12):
            sink.appendDecimal(value.int64)
        case (_, 0x02):
            if hasNUL(value.utf8) { throw nulCharacter(column) }
            sink.append(value.utf8)
        case (_, 0x07):
            sink.appendHex(value.bytes)
        case (_, 0x13):
            value.decimal128.withCanonicalText { sink.append($0) }
        case (_, 0x01):
            sink.append(doubleText(value.double))
        default:
            sink.append(scalarText(value.decoded))
        }
    }

    /// PostgreSQL's text and jsonb cannot hold U+0000 (COPY refuses the batch), and Redshift's VARCHAR parameters
    /// end at it (the rest of the value was lost): such a value's row is dead-lettered. Keys escape it (`KeyText`).
    static func nulCharacter(_ column: String) -> TooLarge {
        TooLarge(column: column, bytes: 0, limit: 0, reason: "a string with a NUL character (U+0000), which PostgreSQL and Redshift text cannot hold")
    }

    static func hasNUL(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = utf8.baseAddress, !utf8.isEmpty else { return false }
        return memchr(base, 0, utf8.count) != nil
    }

    /// Whether a string anywhere inside a document or array holds U+0000 (field names cannot).
    public static func containsNUL(in value: BSONValueView) -> Bool {
        switch value.type {
        case 0x02: return hasNUL(value.utf8)
        case 0x03, 0x04:
            var found = false
            value.forEachElement { _, element in
                if !found && containsNUL(in: element) { found = true }
            }
            return found
        default: return false
        }
    }

    /// The byte length of the longest string anywhere inside a document or array (keys included); nil for none.
    public static func longestString(in value: BSONValueView) -> Int? {
        switch value.type {
        case 0x02: return value.utf8.count
        case 0x03, 0x04:
            var longest: Int?
            value.forEachElement { key, element in
                if value.isDocument { longest = max(longest ?? 0, key.count) }
                if let inner = longestString(in: element) { longest = max(longest ?? 0, inner) }
            }
            return longest
        default: return nil
        }
    }

    /// Text form of a scalar (what a value becomes once its column widened to varchar).
    public static func scalarText(_ value: BSON) -> String {
        switch value {
        case .string(let s): s
        case .int32(let i): String(i)
        case .int64(let i): String(i)
        case .double(let d): doubleText(d)
        case .decimal128(let d): d.description
        case .bool(let b): b ? "true" : "false"
        case .datetime(let ms): timestampText(ms)
        case .objectId(let oid): oid.description
        case .timestamp(let t): String(UInt64(t.seconds) << 32 | UInt64(t.increment))
        case .document, .array: plainJSON(value)
        case .binary(let b): ExtendedJSON.base64(b.data)
        case .regex(let p, let o): "/\(p)/\(o)"
        case .minKey: #"{"$minKey":1}"#
        case .maxKey: #"{"$maxKey":1}"#
        case .null, .undefined, .opaque: ""
        }
    }

    static func doubleText(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return "\(d)"
    }

    /// `YYYY-MM-DD HH:MM:SS.mmm` (UTC), any year BSON dates hold; BC years as PostgreSQL writes them.
    public static func timestampText(_ ms: Int64) -> String {
        var plain = PlainText()
        writeTimestamp(ms, to: &plain)
        return String(decoding: plain.bytes, as: UTF8.self)
    }

    static func writeTimestamp<Sink: TextSink>(_ ms: Int64, to sink: inout Sink) {
        let days = Int(ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000)
        let msOfDay = Int(ms - Int64(days) * 86_400_000)
        let (y, m, d) = ISODate.civil(days: days)
        sink.appendPadded(y <= 0 ? 1 - y : y, width: 4)
        sink.append(UInt8(ascii: "-"))
        sink.appendPadded(m, width: 2)
        sink.append(UInt8(ascii: "-"))
        sink.appendPadded(d, width: 2)
        sink.append(UInt8(ascii: " "))
        sink.appendPadded(msOfDay / 3_600_000, width: 2)
        sink.append(UInt8(ascii: ":"))
        sink.appendPadded(msOfDay / 60_000 % 60, width: 2)
        sink.append(UInt8(ascii: ":"))
        sink.appendPadded(msOfDay / 1000 % 60, width: 2)
        sink.append(UInt8(ascii: "."))
        sink.appendPadded(msOfDay % 1000, width: 3)
        if y <= 0 { sink.append(" BC" as StaticString) }
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) from microseconds since the epoch: a watermark bound, exactly.
    public static func timestampMicrosText(_ micros: Int64) -> String {
        let ms = micros >= 0 ? micros / 1000 : (micros - 999) / 1000
        let sub = Int(micros - ms * 1000)
        var text = timestampText(ms)
        if text.hasSuffix(" BC") { return text }
        text += String(repeating: "0", count: 3 - String(sub).count) + String(sub)
        return text
    }

    /// Plain JSON for SUPER/jsonb: numbers stay numbers (Decimal128 as its exact digits), dates ISO-8601 strings,
    /// ObjectIds hex strings, binary base64 strings.
    public static func plainJSON(_ value: BSON) -> String {
        var plain = PlainText()
        value.withView { writeJSON($0, to: &plain) }
        return String(decoding: plain.bytes, as: UTF8.self)
    }

    /// A document or array as JSON, each element's value written by `element`.
    static func writeContainer<Sink: TextSink>(_ value: BSONValueView, to sink: inout Sink,
                                               element write: (BSONValueView, inout Sink) -> Void) {
        let isDocument = value.isDocument
        sink.append(UInt8(ascii: isDocument ? "{" : "["))
        var first = true
        value.forEachElement { key, element in
            if !first { sink.append(UInt8(ascii: ",")) }
            first = false
            if isDocument {
                // Keys are not checked as values are: bytes that are not UTF-8 are replaced (U+FFFD), never sent.
                if key.contains(where: { $0 >= 0x80 }) && String(validating: key, as: UTF8.self) == nil {
                    sink.appendJSONString(String(decoding: key, as: UTF8.self))
                } else {
                    sink.appendJSONString(key)
                }
                sink.append(UInt8(ascii: ":"))
            }
            write(element, &sink)
        }
        sink.append(UInt8(ascii: isDocument ? "}" : "]"))
    }

    static func writeJSON<Sink: TextSink>(_ value: BSONValueView, to sink: inout Sink) {
        switch value.type {
        case 0x03, 0x04:
            writeContainer(value, to: &sink) { element, sink in writeJSON(element, to: &sink) }
        case 0x02: sink.appendJSONString(value.utf8)
        case 0x10: sink.appendDecimal(Int64(value.int32))
        case 0x12: sink.appendDecimal(value.int64)
        case 0x01:
            let d = value.double
            sink.append(d.isFinite ? "\(d)" : "null")
        case 0x13:
            let d = value.decimal128
            if d.isNaN || d.isInfinite { sink.append("null" as StaticString) } else { d.withCanonicalText { sink.append($0) } }
        case 0x08: sink.append(value.bool ? "true" as StaticString : "false")
        case 0x09:
            let ms = value.datetime
            sink.appendJSONString(ISODate.format(milliseconds: ms) ?? timestampText(ms))
        case 0x07:
            sink.append(UInt8(ascii: "\""))
            sink.appendHex(value.bytes)
            sink.append(UInt8(ascii: "\""))
        case 0x05: sink.appendJSONString(ExtendedJSON.base64(Array(value.binaryData)))
        case 0x11, 0x0B: sink.appendJSONString(scalarText(value.decoded))
        default: sink.append("null" as StaticString)
        }
    }
}
