import BSON

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
    public static let timestampRange: ClosedRange<Int64> = -210_866_803_200_000...9_224_318_015_999_999 / 1000

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

    /// Writes the text of `value` for a column of `type` into `sink` (a parameter's bytes, or COPY text escaped as
    /// it goes), without building a String for the common scalars. Throws before writing anything when the value
    /// does not fit. `byteaPrefix`: PostgreSQL bytea input wants `\x` before the hex (Redshift's FROM_HEX does not).
    public static func write<Sink: TextSink>(_ value: BSON, as type: ColumnType, column: String, byteaPrefix: Bool = false,
                                             to sink: inout Sink) throws(TooLarge) {
        switch (type, value) {
        case (.nested, _):
            let json = plainJSON(value)
            if json.utf8.count > superLimit { throw TooLarge(column: column, bytes: json.utf8.count, limit: superLimit) }
            sink.append(json)
        case (.binary(let n), .binary(let b)):
            let limit = min(n, varbyteLimit)
            if b.data.count > limit { throw TooLarge(column: column, bytes: b.data.count, limit: limit) }
            if byteaPrefix { sink.append("\\x" as StaticString) }
            sink.appendHex(b.data)
        case (.varchar(let n), .string(let s)):
            let bytes = s.utf8.count
            if bytes > ColumnType.maxVarchar { throw TooLarge(column: column, bytes: bytes, limit: ColumnType.maxVarchar) }
            if bytes > n { throw TooLarge(column: column, bytes: bytes, limit: n) }
            sink.append(s)
        case (.varchar(let n), _):
            let s = scalarText(value)
            let bytes = s.utf8.count
            if bytes > ColumnType.maxVarchar { throw TooLarge(column: column, bytes: bytes, limit: ColumnType.maxVarchar) }
            if bytes > n { throw TooLarge(column: column, bytes: bytes, limit: n) }
            sink.append(s)
        case (.timestamp, .datetime(let ms)):
            if !timestampRange.contains(ms) {
                throw TooLarge(column: column, bytes: 0, limit: 0, reason: "date \(ms) ms since 1970 is out of TIMESTAMP's range (4714 BC to 294276 AD)")
            }
            writeTimestamp(ms, to: &sink)
        case (_, .bool(let b)):
            sink.append(b ? "true" as StaticString : "false")
        case (_, .int32(let i)):
            sink.appendDecimal(Int64(i))
        case (_, .int64(let i)):
            sink.appendDecimal(i)
        case (_, .string(let s)):
            sink.append(s)
        case (_, .objectId(let oid)):
            sink.appendHex(oid.bytes)
        default:
            sink.append(scalarText(value))
        }
    }

    /// The byte length of the longest string anywhere inside a document or array (keys included); nil for none.
    public static func longestString(in value: BSON) -> Int? {
        switch value {
        case .string(let s): return s.utf8.count
        case .document(let d):
            return d.reduce(nil as Int?) { best, element in
                [best, element.0.utf8.count, longestString(in: element.1)].compactMap { $0 }.max()
            }
        case .array(let items): return items.compactMap(longestString(in:)).max()
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
        case .null, .undefined, .minKey, .maxKey, .opaque: ""
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
        var out = ""
        writeJSON(value, into: &out)
        return out
    }

    static func writeJSON(_ value: BSON, into out: inout String) {
        switch value {
        case .document(let doc):
            out += "{"
            var first = true
            for (k, v) in doc {
                if !first { out += "," }
                first = false
                ExtendedJSON.writeString(k, into: &out)
                out += ":"
                writeJSON(v, into: &out)
            }
            out += "}"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                writeJSON(item, into: &out)
            }
            out += "]"
        case .string(let s): ExtendedJSON.writeString(s, into: &out)
        case .int32(let i): out += String(i)
        case .int64(let i): out += String(i)
        case .double(let d): out += d.isFinite ? "\(d)" : "null"
        case .decimal128(let d): out += d.isNaN || d.isInfinite ? "null" : d.description
        case .bool(let b): out += b ? "true" : "false"
        case .null, .undefined, .minKey, .maxKey, .opaque: out += "null"
        case .datetime(let ms): ExtendedJSON.writeString(ISODate.format(milliseconds: ms) ?? timestampText(ms), into: &out)
        case .objectId(let oid): ExtendedJSON.writeString(oid.description, into: &out)
        case .binary(let b): ExtendedJSON.writeString(ExtendedJSON.base64(b.data), into: &out)
        case .timestamp, .regex: ExtendedJSON.writeString(scalarText(value), into: &out)
        }
    }
}
