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

    /// True when both spell the same significant digits (ignores sign, point, exponent and leading zeros).
    private static func sameDigits(_ a: String, _ b: String) -> Bool {
        func digits(_ s: String) -> String {
            let mantissa = s.lowercased().split(separator: "e", maxSplits: 1).first.map(String.init) ?? s
            let d = mantissa.filter(\.isNumber).drop(while: { $0 == "0" })
            return String(d.reversed().drop(while: { $0 == "0" }).reversed())
        }
        return digits(a) == digits(b)
    }
}
