import BSON
import Foundation

/// The text of an `_id` in a text key column (docs/ARCHITECTURE.md, "Key text"): one row per document, so two
/// different `_id`s never get the same text — `5` and `"5"`, an ObjectId and its hex, `true` and `"true"`.
///
/// - A string is itself, unless it could be taken for the text of another type (it starts with `{` or `"`, or is
///   `true`, `false` or `null`), ends with a space (Redshift ignores trailing spaces when it compares VARCHARs:
///   `"a"` and `"a "` would be one key) or holds U+0000 (no text column can): then it is a JSON string literal.
/// - Any other `_id` is tagged as in Extended JSON: `{"$oid":"…"}`, `{"$date":{"$numberLong":"ms"}}`, `true`,
///   `null`, a document with every value tagged so — except a binary, `{"$binary":"hex"}` without its subtype: a
///   binary key column does not store subtypes, and its rows must convert to the same text (binaries differing
///   only in subtype share a row, as they do in a binary key column).
/// - A number with an integral value that fits 64 bits is `{"$numberLong":"n"}` whatever its BSON type: MongoDB
///   holds one `_id` per numeric value (5, 5.0 and NumberDecimal("5.00") are one), and the rows of a numeric key
///   column converted to text (`TargetSQL.keyConverted`) cannot tell which type each came from. Other doubles are
///   `{"$numberDouble":"shortest text"}`, other decimals `{"$numberDecimal":"text without trailing zeros"}`.
///
/// Strings (by far the usual text `_id`) read as themselves; the three forms do not overlap, so the text is
/// injective and `parse` reads it back.
public enum KeyText {
    /// Writes the text of `value` for a key column of `type`: a text column gets the key text, any other column
    /// the value as `ValueText` writes it.
    public static func write<Sink: TextSink>(_ value: BSONValueView, as type: ColumnType, column: String, byteaPrefix: Bool = false,
                                             to sink: inout Sink) throws(ValueText.TooLarge) {
        switch type {
        case .varchar(let width):
            let limit = min(width, ColumnType.maxVarchar)
            if value.type == 0x02 && !isTagged(value.utf8) {
                // The usual text key, straight from the document.
                let bytes = value.utf8.count
                if bytes > limit { throw ValueText.TooLarge(column: column, bytes: bytes, limit: limit) }
                sink.append(value.utf8)
                return
            }
            var plain = PlainText()
            writeTop(value, to: &plain)
            if plain.bytes.count > limit { throw ValueText.TooLarge(column: column, bytes: plain.bytes.count, limit: limit) }
            plain.bytes.withUnsafeBufferPointer { sink.append($0) }
        default:
            try ValueText.write(value, as: type, column: column, byteaPrefix: byteaPrefix, to: &sink)
        }
    }

    /// Whether a key column of `type` can hold `value` without widening: a text column any `_id`, a typed column
    /// the values of its type (and those it took in when it widened).
    public static func canHold(_ type: ColumnType, _ value: BSONValueView) -> Bool {
        switch type {
        case .varchar: return true
        default:
            let wanted = ColumnType.ofKey(value)
            return type.widened(with: wanted) == type
        }
    }

    /// `write` for a decoded value.
    public static func write<Sink: TextSink>(_ value: BSON, as type: ColumnType, column: String, byteaPrefix: Bool = false,
                                             to sink: inout Sink) throws(ValueText.TooLarge) {
        try value.withView { (view) throws(ValueText.TooLarge) in try write(view, as: type, column: column, byteaPrefix: byteaPrefix, to: &sink) }
    }

    /// The key text of `value` (for a text key column of any width).
    public static func text(_ value: BSON) -> String {
        String(decoding: identity(value), as: UTF8.self)
    }

    /// What tells two `_id`s apart in the target: their key text's bytes (not a String: Swift's equality would
    /// take a composed and a decomposed é for one key).
    public static func identity(_ value: BSON) -> [UInt8] {
        var plain = PlainText()
        value.withView { writeTop($0, to: &plain) }
        return plain.bytes
    }

    /// The `_id` whose key text is `text` (the inverse of `text`, up to the numeric type: an integral number reads
    /// back as an int64, which MongoDB matches with the int32, double or decimal of the same value).
    public static func parse(_ text: String) -> BSON? {
        guard isTagged(Array(text.utf8)) else { return .string(text) }
        guard let json = try? JSONToBSON.parse(text) else { return nil }
        return untagged(json)
    }

    /// A value read as plain JSON with its tags (`writeTagged`) turned back into the values they stand for.
    static func untagged(_ json: BSON) -> BSON? {
        switch json {
        case .document(let d):
            let elements = d.elements
            if elements.count == 1, elements[0].0.hasPrefix("$") { return untaggedScalar(elements[0].0, elements[0].1) }
            var out = Document()
            for (key, value) in elements {
                guard let value = untagged(value) else { return nil }
                out.append(key, value)
            }
            return .document(out)
        case .array(let items):
            var out: [BSON] = []
            for item in items {
                guard let value = untagged(item) else { return nil }
                out.append(value)
            }
            return .array(out)
        case .string, .bool, .null: return json
        default: return nil
        }
    }

    private static func untaggedScalar(_ tag: String, _ inner: BSON) -> BSON? {
        switch (tag, inner) {
        case ("$numberLong", .string(let s)): return Int64(s).map(BSON.int64)
        case ("$numberDouble", .string(let s)): return Double(s).map(BSON.double)
        case ("$numberDecimal", .string(let s)): return Decimal128(s).map(BSON.decimal128)
        case ("$oid", .string(let s)): return ObjectId(hex: s).map(BSON.objectId)
        case ("$date", .document(let d)):
            guard case .string(let s)? = d["$numberLong"], let ms = Int64(s) else { return nil }
            return .datetime(ms)
        case ("$minKey", _): return .minKey
        case ("$maxKey", _): return .maxKey
        case ("$binary", .string(let hex)):
            return hexBytes(hex).map { .binary(BSONBinary(subtype: 0, data: $0)) }
        case ("$undefined", _): return .undefined
        case ("$timestamp", .document(let d)):
            guard let t = d["t"]?.intValue, let i = d["i"]?.intValue, let seconds = UInt32(exactly: t), let increment = UInt32(exactly: i) else { return nil }
            return .timestamp(BSONTimestamp(seconds: seconds, increment: increment))
        case ("$bson", .document(let d)):
            guard case .string(let type)? = d["type"], let code = UInt8(type, radix: 16), case .string(let hex)? = d["hex"],
                  let bytes = hexBytes(hex) else { return nil }
            guard code == 0x0B else { return .opaque(type: code, bytes: bytes) }
            // A regex: two C strings.
            let parts = bytes.split(separator: 0, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return nil }
            return .regex(pattern: String(decoding: parts[0], as: UTF8.self), options: String(decoding: parts[1], as: UTF8.self))
        default: return nil
        }
    }

    private static func hexBytes(_ hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i...i + 1], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }

    /// The `_id`s to look up for a key text: the one it reads back as, and for a binary its other usual subtypes
    /// (the text does not keep the subtype).
    public static func candidates(_ text: String) -> [BSON] {
        guard let id = parse(text) else { return [] }
        guard case .binary(let b) = id else { return [id] }
        return [0, 3, 4].map { .binary(BSONBinary(subtype: $0, data: b.data)) }
    }

    /// Whether a string's own bytes could be taken for the text of another type.
    static func isTagged(_ utf8: some BidirectionalCollection<UInt8>) -> Bool {
        guard let first = utf8.first else { return false }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "\"") || utf8.last == UInt8(ascii: " ") { return true }
        // Text columns cannot hold U+0000: the JSON literal escapes it.
        if utf8.contains(0) { return true }
        return utf8.elementsEqual("true".utf8) || utf8.elementsEqual("false".utf8) || utf8.elementsEqual("null".utf8)
    }

    static func writeTop<Sink: TextSink>(_ value: BSONValueView, to sink: inout Sink) {
        if value.type == 0x02 && !isTagged(value.utf8) {
            sink.append(value.utf8)
        } else {
            writeTagged(value, to: &sink)
        }
    }

    /// Extended JSON with the number rule above; strings always as JSON literals.
    static func writeTagged<Sink: TextSink>(_ value: BSONValueView, to sink: inout Sink) {
        switch value.type {
        case 0x02: sink.appendJSONString(value.utf8)
        case 0x10: writeLong(Int64(value.int32), to: &sink)
        case 0x12: writeLong(value.int64, to: &sink)
        case 0x01:
            let d = value.double
            writeNumber(integral(d), "{\"$numberDouble\":\"", to: &sink) { ValueText.doubleText(d) }
        case 0x13:
            let d = value.decimal128
            writeNumber(integral(d), "{\"$numberDecimal\":\"", to: &sink) { trimmedDecimalText(d) }
        case 0x07:
            sink.append("{\"$oid\":\"" as StaticString)
            sink.appendHex(value.bytes)
            sink.append("\"}" as StaticString)
        case 0x09:
            sink.append("{\"$date\":" as StaticString)
            writeLong(value.datetime, to: &sink)
            sink.append(UInt8(ascii: "}"))
        case 0x08: sink.append(value.bool ? "true" as StaticString : "false")
        case 0x0A: sink.append("null" as StaticString)
        case 0x06: sink.append("{\"$undefined\":true}" as StaticString)
        case 0xFF: sink.append("{\"$minKey\":1}" as StaticString)
        case 0x7F: sink.append("{\"$maxKey\":1}" as StaticString)
        case 0x03, 0x04:
            ValueText.writeContainer(value, to: &sink) { element, sink in writeTagged(element, to: &sink) }
        case 0x05:
            sink.append("{\"$binary\":\"" as StaticString)
            sink.appendHex(value.binaryData)
            sink.append("\"}" as StaticString)
        case 0x11:
            let packed = UInt64(bitPattern: value.int64)
            sink.append("{\"$timestamp\":{\"t\":" as StaticString)
            sink.appendDecimal(Int64(packed >> 32))
            sink.append(",\"i\":" as StaticString)
            sink.appendDecimal(Int64(packed & 0xFFFF_FFFF))
            sink.append("}}" as StaticString)
        default:
            // Regexes, code, symbols, DBPointers: the type and the value's bytes.
            sink.append("{\"$bson\":{\"type\":\"" as StaticString)
            sink.appendHex(CollectionOfOne(value.type))
            sink.append("\",\"hex\":\"" as StaticString)
            sink.appendHex(value.bytes)
            sink.append("\"}}" as StaticString)
        }
    }

    /// An integral number as `{"$numberLong":"n"}`, any other as `tag` and its text.
    static func writeNumber<Sink: TextSink>(_ integral: Int64?, _ tag: StaticString, to sink: inout Sink, text: () -> String) {
        if let integral { return writeLong(integral, to: &sink) }
        sink.append(tag)
        sink.append(text())
        sink.append("\"}" as StaticString)
    }

    static func writeLong<Sink: TextSink>(_ n: Int64, to sink: inout Sink) {
        sink.append("{\"$numberLong\":\"" as StaticString)
        sink.appendDecimal(n)
        sink.append("\"}" as StaticString)
    }

    /// The value of a double with no fractional part that fits an Int64 (-0.0 is 0).
    static func integral(_ d: Double) -> Int64? {
        guard d.isFinite, d == d.rounded(.towardZero), d >= -0x1p63, d < 0x1p63 else { return nil }
        return Int64(d)
    }

    /// The value of a finite decimal with no fractional part that fits an Int64.
    static func integral(_ d: Decimal128) -> Int64? {
        guard !d.isNaN && !d.isInfinite else { return nil }
        var (coefficient, exponent) = d.parts
        if coefficient == 0 { return 0 }
        while exponent < 0 {
            guard coefficient % 10 == 0 else { return nil }
            coefficient /= 10
            exponent += 1
        }
        while exponent > 0 {
            guard coefficient <= UInt128(UInt64.max) else { return nil }
            coefficient *= 10
            exponent -= 1
        }
        if d.isNegative {
            guard coefficient <= UInt128(1) << 63 else { return nil }
            return coefficient == UInt128(1) << 63 ? .min : -Int64(coefficient)
        }
        guard coefficient < UInt128(1) << 63 else { return nil }
        return Int64(coefficient)
    }

    /// The canonical text of a non-integral decimal; in plain notation without the trailing zeros of its scale
    /// (what a `decimal(38, s)` column's text becomes with them trimmed).
    static func trimmedDecimalText(_ d: Decimal128) -> String {
        var text = d.description
        guard text.contains("."), !text.contains("E") else { return text }
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}
