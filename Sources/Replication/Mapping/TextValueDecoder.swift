import BSON

/// Why a source value could not become BSON. The row goes to the dead-letter file with this reason.
public struct ValueError: Error, CustomStringConvertible, Sendable {
    public var column: String
    public var reason: String
    public var description: String { "column \(column): \(reason)" }
}

/// Converts PostgreSQL/Redshift text-format values to BSON (docs/ARCHITECTURE.md, "Types"), exactly: decimals stay Decimal128,
/// int8 stays int64, timestamps keep milliseconds, JSON/SUPER becomes documents and arrays.
public enum TextValueDecoder {
    public static func decode(_ text: UnsafeBufferPointer<UInt8>, type: UInt32, column: String) throws(ValueError) -> BSON {
        switch type {
        case PostgresType.int2, PostgresType.int4:
            guard let v = parseInt(text), let i = Int32(exactly: v) else { throw ValueError(column: column, reason: "not an integer") }
            return .int32(i)
        case PostgresType.int8, PostgresType.oid:
            guard let v = parseInt(text) else { throw ValueError(column: column, reason: "not an integer") }
            return .int64(v)
        case PostgresType.float4, PostgresType.float8:
            guard let d = parseFloat(string(text), type: type) else { throw ValueError(column: column, reason: "not a number") }
            return .double(d)
        case PostgresType.numeric:
            let s = string(text)
            guard let d = Decimal128(s) else {
                throw ValueError(column: column, reason: "decimal \(s.prefix(60)) does not fit Decimal128 (34 significant digits)")
            }
            return .decimal128(d)
        case PostgresType.bool:
            return .bool(text.first == UInt8(ascii: "t"))
        case PostgresType.date:
            guard let ms = parseTimestamp(text, dateOnly: true) else { throw ValueError(column: column, reason: "date \(string(text)) outside BSON's range") }
            return .datetime(ms)
        case PostgresType.timestamp, PostgresType.timestamptz:
            guard let ms = parseTimestamp(text, dateOnly: false) else {
                throw ValueError(column: column, reason: "timestamp \(string(text)) outside BSON's range")
            }
            return .datetime(ms)
        case PostgresType.json, PostgresType.jsonb, PostgresType.redshiftSuper:
            do { return try JSONToBSON.parse(text) } catch {
                throw ValueError(column: column, reason: "invalid JSON: \(error)")
            }
        case PostgresType.bytea, PostgresType.redshiftVarbyte:
            guard let bytes = parseHex(text) else { throw ValueError(column: column, reason: "invalid hex bytes") }
            return .binary(BSONBinary(subtype: 0, data: bytes))
        default:
            guard let s = String(validating: text, as: UTF8.self) else { throw ValueError(column: column, reason: "invalid UTF-8") }
            return .string(s)
        }
    }

    @inline(__always)
    static func string(_ text: UnsafeBufferPointer<UInt8>) -> String { String(decoding: text, as: UTF8.self) }

    /// A float column's text as a double. A REAL is read as the REAL it is, then taken at its shortest decimal:
    /// its text is its exact value widened to a double (`SourceTable.selectList`: `0.10000000149011612`) or
    /// PostgreSQL's shortest form (`0.1`) — both give the double 0.1, not the REAL's binary value widened.
    public static func parseFloat(_ text: String, type: UInt32) -> Double? {
        guard type == PostgresType.float4 else { return Double(text) }
        guard let single = Float(text) else { return nil }
        return single.isFinite ? Double("\(single)") : Double(single)
    }

    static func parseInt(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        var negative = false
        if i < text.count, text[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < text.count else { return nil }
        var value: Int64 = 0
        while i < text.count {
            let d = text[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = negative ? m.subtractingReportingOverflow(Int64(d)) : m.addingReportingOverflow(Int64(d))
            if o1 || o2 { return nil }
            value = a
            i += 1
        }
        return value
    }

    /// `YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH[:MM[:SS]]][ BC]` → milliseconds since the epoch (µs truncated toward
    /// the past). Nil for infinity and years BSON dates cannot hold.
    public static func parseTimestamp(_ text: UnsafeBufferPointer<UInt8>, dateOnly: Bool) -> Int64? {
        parseTimestampMicros(text).map(milliseconds(fromMicroseconds:))
    }

    /// Microseconds → BSON date milliseconds; floor division keeps pre-1970 instants ordered.
    public static func milliseconds(fromMicroseconds micros: Int64) -> Int64 {
        micros >= 0 ? micros / 1000 : (micros - 999) / 1000
    }

    /// Source timestamp or date text → microseconds since the epoch, exactly (nil when it is not one).
    public static func parseTimestampMicros(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        var p = 0
        func digits(_ n: Int) -> Int? {
            guard p + n <= text.count else { return nil }
            var v = 0
            for _ in 0..<n {
                let d = Int(text[p]) - 48
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
                p += 1
            }
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard p < text.count, text[p] == c else { return false }
            p += 1
            return true
        }
        // Years may have more than 4 digits.
        var year = 0
        var yearDigits = 0
        while p < text.count, text[p] >= 48, text[p] <= 57 { year = year * 10 + Int(text[p]) - 48; p += 1; yearDigits += 1 }
        guard yearDigits >= 4, expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")), let day = digits(2) else { return nil }
        var micros: Int64 = 0
        var offsetSeconds = 0
        if p < text.count && text[p] == UInt8(ascii: " ") && p + 1 < text.count && text[p + 1] != UInt8(ascii: "B") {
            p += 1
            guard let h = digits(2), expect(UInt8(ascii: ":")), let mi = digits(2), expect(UInt8(ascii: ":")), let s = digits(2) else { return nil }
            micros = Int64(h * 3600 + mi * 60 + s) * 1_000_000
            if p < text.count && text[p] == UInt8(ascii: ".") {
                p += 1
                var frac: Int64 = 0
                var n = 0
                while p < text.count, text[p] >= 48, text[p] <= 57 {
                    if n < 6 { frac = frac * 10 + Int64(text[p] - 48) }
                    n += 1
                    p += 1
                }
                for _ in n..<max(n, 6) { frac *= 10 }
                micros += frac
            }
            if p < text.count && (text[p] == UInt8(ascii: "+") || text[p] == UInt8(ascii: "-")) {
                let sign = text[p] == UInt8(ascii: "-") ? -1 : 1
                p += 1
                guard let oh = digits(2) else { return nil }
                var off = oh * 3600
                if expect(UInt8(ascii: ":")) { guard let om = digits(2) else { return nil }; off += om * 60 }
                if expect(UInt8(ascii: ":")) { guard let os = digits(2) else { return nil }; off += os }
                offsetSeconds = sign * off
            }
        }
        if p + 3 <= text.count && text[p] == UInt8(ascii: " ") && text[p + 1] == UInt8(ascii: "B") { year = 1 - year; p += 3 }
        guard p == text.count, (1...12).contains(month), (1...31).contains(day) else { return nil }
        guard year >= -290_000 && year <= 290_000 else { return nil }
        let days = Int64(ISODate.days(year: year, month: month, day: day))
        return days * 86_400_000_000 + micros - Int64(offsetSeconds) * 1_000_000
    }

    /// Source timestamp text (`2024-01-01 00:00:00.123456[+00]`) → epoch milliseconds.
    public static func parseTimestampText(_ text: String) -> Int64? {
        var copy = text
        return copy.withUTF8 { parseTimestamp($0, dateOnly: false) }
    }

    /// `\x0a0b` (PostgreSQL bytea hex) or `0a0b` (Redshift VARBYTE).
    static func parseHex(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var start = 0
        if text.count >= 2 && text[0] == UInt8(ascii: "\\") && text[1] == UInt8(ascii: "x") { start = 2 }
        guard (text.count - start) % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity((text.count - start) / 2)
        var i = start
        while i < text.count {
            guard let hi = TextValueWriter.nibble(text[i]), let lo = TextValueWriter.nibble(text[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
