/// The body of a JSON string, decoded to UTF-8 bytes: shared by the JSON → BSON parser and the UNLOAD line scanner.
enum JSONString {
    /// Reads from `p` (just past the opening quote) to past the closing quote. Throws the reason when the text
    /// ends first or an escape is malformed; `\uD83D\uDE00` pairs become one scalar.
    static func read(_ bytes: UnsafeBufferPointer<UInt8>, at p: inout Int) throws(Malformed) -> [UInt8] {
        var out = PlainText()
        try read(bytes, at: &p, into: &out)
        return out.bytes
    }

    /// `read`, appending the decoded bytes to `out` (runs without escapes copied whole).
    static func read<Sink: TextSink>(_ bytes: UnsafeBufferPointer<UInt8>, at p: inout Int, into out: inout Sink) throws(Malformed) {
        var run = p
        while p < bytes.count {
            let c = bytes[p]
            if c != UInt8(ascii: "\\"), c != UInt8(ascii: "\"") { p += 1; continue }
            out.append(UnsafeBufferPointer(rebasing: bytes[run..<p]))
            p += 1
            if c == UInt8(ascii: "\"") { return }
            guard p < bytes.count else { break }
            let e = bytes[p]
            p += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var scalar = try hex4(bytes, at: &p)
                if (0xD800..<0xDC00).contains(scalar), p + 6 <= bytes.count, bytes[p] == UInt8(ascii: "\\"), bytes[p + 1] == UInt8(ascii: "u") {
                    p += 2
                    let low = try hex4(bytes, at: &p)
                    // Only a low surrogate completes the pair (anything else would overflow or name the wrong character).
                    guard (0xDC00..<0xE000).contains(low) else { throw Malformed(reason: "a high surrogate not followed by a low one") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw Malformed(reason: "invalid \\u escape") }
                for unit in UTF8.encode(u)! { out.append(unit) }
            default: out.append(e)
            }
            run = p
        }
        throw Malformed(reason: "unterminated string")
    }

    struct Malformed: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    private static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, at p: inout Int) throws(Malformed) -> UInt32 {
        guard p + 4 <= bytes.count else { throw Malformed(reason: "short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[p]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw Malformed(reason: "bad \\u escape")
            }
            v = v << 4 | UInt32(d)
            p += 1
        }
        return v
    }
}
