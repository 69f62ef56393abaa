import BSON

/// How a column's text becomes BSON, decided once per column instead of once per value.
enum TextValueKind: Sendable {
    case int32, int64, double, decimal, bool, datetime, json, bytes, string

    init(typeOID: UInt32) {
        switch typeOID {
        case PostgresType.int2, PostgresType.int4: self = .int32
        case PostgresType.int8, PostgresType.oid: self = .int64
        case PostgresType.float4, PostgresType.float8: self = .double
        case PostgresType.numeric: self = .decimal
        case PostgresType.bool: self = .bool
        case PostgresType.date, PostgresType.timestamp, PostgresType.timestamptz: self = .datetime
        case PostgresType.json, PostgresType.jsonb, PostgresType.redshiftSuper: self = .json
        case PostgresType.bytea, PostgresType.redshiftVarbyte: self = .bytes
        default: self = .string
        }
    }
}

/// The in-place twin of `TextValueDecoder`: writes a source value's BSON straight from the source's text buffer
/// into a record (one pass, no intermediate value). Nil when it cannot — a value to refuse, or a form only the
/// general decoder handles (floats, `NaN`, escaped JSON strings are still fast) — and then the caller rewinds and
/// asks `TextValueDecoder`, which gives the same value or the reason. Both must agree byte for byte
/// (`RecordEncodingTests`).
enum TextValueWriter {
    /// Writes the value; returns its BSON type.
    @inline(__always)
    static func write(_ text: UnsafeBufferPointer<UInt8>, kind: TextValueKind, into w: inout BSONWriter) -> UInt8? {
        switch kind {
        case .int32:
            guard let v = TextValueDecoder.parseInt(text), let i = Int32(exactly: v) else { return nil }
            w.littleEndian(i)
            return 0x10
        case .int64:
            guard let v = TextValueDecoder.parseInt(text) else { return nil }
            w.littleEndian(v)
            return 0x12
        case .double:
            return nil
        case .decimal:
            guard let d = Decimal128(utf8: text) else { return nil }
            w.littleEndian(d.low)
            w.littleEndian(d.high)
            return 0x13
        case .bool:
            w.byte(text.first == UInt8(ascii: "t") ? 1 : 0)
            return 0x08
        case .datetime:
            guard let ms = TextValueDecoder.parseTimestamp(text, dateOnly: false) else { return nil }
            w.littleEndian(ms)
            return 0x09
        case .json:
            return try? JSONToBSON.write(text, into: &w)
        case .bytes:
            return hexBytes(text, &w)
        case .string:
            guard isUTF8(text) else { return nil }
            w.stringValue(text)
            return 0x02
        }
    }

    /// ASCII is checked a word at a time; anything else by the standard library's validator.
    @inline(__always)
    static func isUTF8(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = text.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var i = 0
        let n = text.count
        var high: UInt64 = 0
        while i + 8 <= n {
            high |= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < n {
            high |= UInt64(text[i])
            i += 1
        }
        if high & 0x8080_8080_8080_8080 == 0 { return true }
        return String(validating: text, as: UTF8.self) != nil
    }

    /// `\x0a0b` (PostgreSQL bytea) or `0a0b` (Redshift VARBYTE) → binary subtype 0.
    static func hexBytes(_ text: UnsafeBufferPointer<UInt8>, _ w: inout BSONWriter) -> UInt8? {
        var i = 0
        if text.count >= 2 && text[0] == UInt8(ascii: "\\") && text[1] == UInt8(ascii: "x") { i = 2 }
        guard (text.count - i) % 2 == 0 else { return nil }
        w.littleEndian(UInt32((text.count - i) / 2))
        w.byte(0)
        while i < text.count {
            guard let hi = nibble(text[i]), let lo = nibble(text[i + 1]) else { return nil }
            w.byte(hi << 4 | lo)
            i += 2
        }
        return 0x05
    }

    @inline(__always)
    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
