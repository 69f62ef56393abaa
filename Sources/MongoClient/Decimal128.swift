internal import CMongoC

/// IEEE 754-2008 decimal128, as BSON stores it. Text conversion goes through libbson, so it is exact
/// (`12345.678900` keeps its trailing zeros; 34 significant digits).
public struct Decimal128: Sendable, Hashable, CustomStringConvertible {
    public var low: UInt64
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// Parses `-12.50`, `1E+3`, `NaN`, `Infinity`. Nil when the text is not a decimal or does not fit
    /// (more than 34 significant digits, exponent out of range) — never rounded silently.
    public init?(_ text: String) {
        var value = bson_decimal128_t()
        guard bson_decimal128_from_string(text, &value) else { return nil }
        low = value.low
        high = value.high
        // libbson maps unparseable text to NaN; accept NaN only when it was asked for.
        if isNaN && !text.lowercased().contains("nan") { return nil }
        // libbson rounds nothing but clamps; verify that the digits survived by comparing significands.
        if !isNaN && !isInfinite && !Self.sameDigits(text, description) { return nil }
    }

    public var isNaN: Bool { (high >> 58) & 0x1F == 0x1F }
    public var isInfinite: Bool { (high >> 58) & 0x1F == 0x1E }

    public var description: String {
        var value = bson_decimal128_t(low: low, high: high)
        var buffer = [CChar](repeating: 0, count: 64)
        bson_decimal128_to_string(&value, &buffer)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// True when both spell the same significant digits (ignores sign, point, exponent, leading and trailing
    /// zeros). Byte-level: it runs for every decimal of every row.
    static func sameDigits(_ a: String, _ b: String) -> Bool {
        func significand(_ s: String) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(40)
            for byte in s.utf8 {
                if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { break }
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { continue }
                if out.isEmpty && byte == UInt8(ascii: "0") { continue }
                out.append(byte)
            }
            while out.last == UInt8(ascii: "0") { out.removeLast() }
            return out
        }
        return significand(a) == significand(b)
    }
}
