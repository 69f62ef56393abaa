/// IEEE 754-2008 decimal128 in its binary integer decimal (BID) encoding, as BSON stores it.
///
/// Text conversion is exact: `12345.678900` keeps its trailing zeros (coefficient 12345678900, exponent -6), and
/// text that does not fit 34 significant digits or the exponent range is refused, never rounded.
public struct Decimal128: Sendable, Hashable, CustomStringConvertible {
    public var low: UInt64
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    static let exponentBias = 6176
    static let minExponent = -6176
    static let maxExponent = 6111
    static let maxDigits = 34
    /// 10^34: coefficients are below it.
    static let coefficientLimit: UInt128 = {
        var v: UInt128 = 1
        for _ in 0..<34 { v *= 10 }
        return v
    }()

    public var isNegative: Bool { high >> 63 == 1 }
    public var isNaN: Bool { (high >> 58) & 0x1F == 0x1F }
    public var isInfinite: Bool { (high >> 58) & 0x1F == 0x1E }

    /// A finite value from its parts. Nil when the coefficient has more than 34 digits or the exponent is out of range.
    public init?(negative: Bool, coefficient: UInt128, exponent: Int) {
        guard coefficient < Self.coefficientLimit, exponent >= Self.minExponent, exponent <= Self.maxExponent else { return nil }
        let biased = UInt64(exponent + Self.exponentBias)
        let c = coefficient
        high = (negative ? 1 << 63 : 0) | biased << 49 | UInt64(truncatingIfNeeded: c >> 64) & 0x1_FFFF_FFFF_FFFF
        low = UInt64(truncatingIfNeeded: c)
    }

    /// Coefficient and exponent of a finite value (non-canonical encodings read as zero, as the standard says).
    public var parts: (coefficient: UInt128, exponent: Int) {
        if (high >> 61) & 0x3 == 0x3 {
            // Combination field 11…: the implied coefficient is ≥ 2^113, above 10^34 - 1: non-canonical, zero.
            let biased = Int((high >> 47) & 0x3FFF)
            return (0, biased - Self.exponentBias)
        }
        let biased = Int((high >> 49) & 0x3FFF)
        let coefficient = UInt128(high & 0x1_FFFF_FFFF_FFFF) << 64 | UInt128(low)
        return (coefficient < Self.coefficientLimit ? coefficient : 0, biased - Self.exponentBias)
    }

    /// Parses `-12.50`, `1E+3`, `.5`, `NaN`, `Infinity`. Nil when the text is not a decimal or does not fit exactly
    /// (more than 34 significant digits, exponent out of range) — never rounded.
    public init?(_ text: String) {
        var text = text
        guard let value = text.withUTF8({ Decimal128(utf8: $0) }) else { return nil }
        self = value
    }

    /// Parses decimal text in place (hot path: a source's text buffer, no String made).
    public init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        guard let value = Self.plain(bytes) ?? Self.general(bytes) else { return nil }
        self = value
    }

    /// Every form `init?(utf8:)` takes: signs, points, exponents, `NaN`, `Infinity`, up to 34 digits.
    static func general(_ bytes: UnsafeBufferPointer<UInt8>) -> Decimal128? {
        var i = 0
        let n = bytes.count
        var negative = false
        if i < n, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        if i < n, bytes[i] | 0x20 == UInt8(ascii: "n") || bytes[i] | 0x20 == UInt8(ascii: "i") {
            let word = String(decoding: UnsafeBufferPointer(rebasing: bytes[i...]), as: UTF8.self).lowercased()
            switch word {
            case "nan": return Decimal128(low: 0, high: 0x7C00_0000_0000_0000)
            case "inf", "infinity": return Decimal128(low: 0, high: (negative ? 1 << 63 : 0) | 0x7800_0000_0000_0000)
            default: return nil
            }
        }
        var coefficient: UInt128 = 0
        var digits = 0
        // Zeros after the last non-zero digit are held back: they only count once a non-zero digit follows, so
        // that more than 34 digits can still fit when the excess is trailing zeros (the exponent absorbs them).
        var pendingZeros = 0
        var sawDigit = false, sawPoint = false
        var exponent = 0
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: ".") {
                guard !sawPoint else { return nil }
                sawPoint = true
            } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                sawDigit = true
                if sawPoint { exponent -= 1 }
                if b == UInt8(ascii: "0") {
                    if digits > 0 { pendingZeros += 1 }
                } else {
                    guard digits + pendingZeros + 1 <= Self.maxDigits else { return nil }
                    for _ in 0..<pendingZeros { coefficient &*= 10 }
                    digits += pendingZeros + 1
                    pendingZeros = 0
                    coefficient = coefficient &* 10 &+ UInt128(b - UInt8(ascii: "0"))
                }
            } else {
                break
            }
            i += 1
        }
        guard sawDigit else { return nil }
        if i < n {
            guard bytes[i] | 0x20 == UInt8(ascii: "e") else { return nil }
            i += 1
            var expNegative = false
            if i < n, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
                expNegative = bytes[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < n, n - i <= 6 else { return nil }
            var value = 0
            while i < n {
                guard bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(bytes[i] - UInt8(ascii: "0"))
                i += 1
            }
            exponent += expNegative ? -value : value
        }
        // Held-back trailing zeros: keep them in the coefficient while they fit (`1.500` stays 1500E-3), else
        // fold them into the exponent (still exact).
        let kept = min(pendingZeros, Self.maxDigits - digits)
        for _ in 0..<kept { coefficient &*= 10 }
        digits += kept
        exponent += pendingZeros - kept
        // Exponent above the range: pad the coefficient with zeros while it has room (exact clamping).
        while exponent > Self.maxExponent, digits < Self.maxDigits, coefficient != 0 {
            coefficient &*= 10
            digits += 1
            exponent -= 1
        }
        if exponent > Self.maxExponent && coefficient == 0 { exponent = Self.maxExponent }
        // Below the range: drop trailing zeros of the coefficient (exact), or clamp a zero.
        while exponent < Self.minExponent, coefficient != 0, coefficient % 10 == 0 {
            coefficient /= 10
            exponent += 1
        }
        if exponent < Self.minExponent && coefficient == 0 { exponent = Self.minExponent }
        return Decimal128(negative: negative, coefficient: coefficient, exponent: exponent)
    }

    /// `[-+]digits[.digits]` with at most 19 digits — what numeric columns print — in one pass over a `UInt64`:
    /// every digit kept (trailing zeros too), the exponent minus the digits after the point. The general parser
    /// gives the same bits (`BSONRoundTripTests`); nil sends everything else to it.
    @inline(__always)
    static func plain(_ bytes: UnsafeBufferPointer<UInt8>) -> Decimal128? {
        let n = bytes.count
        guard n > 0, n <= 21 else { return nil }
        var i = 0
        let negative = bytes[0] == UInt8(ascii: "-")
        if negative || bytes[0] == UInt8(ascii: "+") { i = 1 }
        var coefficient: UInt64 = 0
        var digits = 0
        var digitsBeforePoint = -1
        while i < n {
            let d = bytes[i] &- UInt8(ascii: "0")
            if d < 10 {
                coefficient = coefficient &* 10 &+ UInt64(d)
                digits += 1
            } else if bytes[i] == UInt8(ascii: "."), digitsBeforePoint < 0 {
                digitsBeforePoint = digits
            } else {
                return nil
            }
            i += 1
        }
        guard digits > 0, digits <= 19 else { return nil }
        let exponent = digitsBeforePoint < 0 ? 0 : digitsBeforePoint - digits
        return Decimal128(low: coefficient, high: (negative ? 1 << 63 : 0) | UInt64(exponent + exponentBias) << 49)
    }

    /// The canonical string form of the BSON Decimal128 specification: plain notation when the exponent is ≤ 0
    /// and the adjusted exponent ≥ -6, scientific otherwise.
    public var description: String {
        withCanonicalText { String(decoding: $0, as: UTF8.self) }
    }

    /// Lends the canonical text (`description`) as UTF-8 bytes, written into a stack buffer: no allocation.
    public func withCanonicalText<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        // Longest form: sign, "0.", six zeros, 34 digits — or sign, 34 digits, ".", "E+6144".
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { out in
            var n = 0
            func put(_ byte: UInt8) { out[n] = byte; n += 1 }
            func put(_ text: StaticString) {
                for i in 0..<text.utf8CodeUnitCount { put(text.utf8Start[i]) }
            }
            if isNaN {
                put("NaN")
            } else if isInfinite {
                put(isNegative ? "-Infinity" : "Infinity")
            } else {
                let (coefficient, exponent) = parts
                // The coefficient's digits, most significant first, at the end of a scratch area.
                var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes ≥ 34 digits
                func write<T: BinaryInteger>(_ value: T, into digits: UnsafeMutableRawBufferPointer) -> Int {
                    var rest = value, count = 0
                    repeat {
                        digits[39 - count] = UInt8(truncatingIfNeeded: 48 + rest % 10)
                        rest /= 10
                        count += 1
                    } while rest > 0
                    return count
                }
                // 64-bit division when the coefficient fits (nearly always): UInt128's is far slower.
                let digitCount = withUnsafeMutableBytes(of: &scratch) { digits in
                    UInt64(exactly: coefficient).map { write($0, into: digits) } ?? write(coefficient, into: digits)
                }
                withUnsafeBytes(of: scratch) { raw in
                    let digits = UnsafeBufferPointer(rebasing: raw.bindMemory(to: UInt8.self)[(40 - digitCount)...])
                    let adjusted = exponent + digitCount - 1
                    if isNegative { put(UInt8(ascii: "-")) }
                    if exponent <= 0 && adjusted >= -6 {
                        let point = digitCount + exponent
                        if exponent == 0 {
                            digits.forEach { put($0) }
                        } else if point > 0 {
                            digits[..<(digits.startIndex + point)].forEach { put($0) }
                            put(UInt8(ascii: "."))
                            digits[(digits.startIndex + point)...].forEach { put($0) }
                        } else {
                            put("0.")
                            for _ in 0..<(-point) { put(UInt8(ascii: "0")) }
                            digits.forEach { put($0) }
                        }
                    } else {
                        put(digits[digits.startIndex])
                        if digitCount > 1 {
                            put(UInt8(ascii: "."))
                            digits.dropFirst().forEach { put($0) }
                        }
                        put(UInt8(ascii: "E"))
                        put(UInt8(ascii: adjusted >= 0 ? "+" : "-"))
                        var magnitude = adjusted.magnitude
                        var divisor: UInt = 1
                        while divisor * 10 <= magnitude { divisor *= 10 }
                        while divisor > 0 {
                            put(UInt8(truncatingIfNeeded: 48 + magnitude / divisor))
                            magnitude %= divisor
                            divisor /= 10
                        }
                    }
                }
            }
            return try body(UnsafeBufferPointer(rebasing: out[..<n]))
        }
    }
}
