import BSON

/// A strict JSON parser that writes BSON directly (json/jsonb/SUPER columns): integers become int32/int64 by size,
/// other numbers double, objects documents (key order kept), arrays arrays. The extractor writes into its record
/// in place (`write`); `parse` wraps the same parser for callers that want a value.
public enum JSONToBSON {
    public struct ParseError: Error, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "\(message) at byte \(offset)" }
    }

    /// Writes the value of `text` after an element header whose type byte the caller patches with the result.
    public static func write(_ text: UnsafeBufferPointer<UInt8>, into writer: inout BSONWriter) throws(ParseError) -> UInt8 {
        var parser = Parser(bytes: text)
        parser.skipSpace()
        let type = try parser.value(depth: 0, &writer)
        parser.skipSpace()
        guard parser.p == text.count else { throw ParseError(offset: parser.p, message: "trailing characters") }
        return type
    }

    public static func parse(_ text: UnsafeBufferPointer<UInt8>) throws(ParseError) -> BSON {
        var scratch = [UInt8](repeating: 0, count: text.count * 2 + 64)
        var failure: ParseError?
        let written = BSONWriter.encode(into: &scratch) { w in
            let document = w.beginDocument()
            let typeAt = w.count
            w.element(0, "v")
            do throws(ParseError) {
                w.patch(typeAt, try write(text, into: &w))
            } catch {
                failure = error
                return false
            }
            w.endDocument(document)
            return true
        }
        guard let written else { throw failure! }
        return Document(trustedBytes: Array(scratch[0..<written]))["v"]!
    }

    public static func parse(_ text: String) throws(ParseError) -> BSON {
        var copy = text
        let result = copy.withUTF8 { utf8 in Result { () throws(ParseError) -> BSON in try parse(utf8) } }
        return try result.get()
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var p = 0

        mutating func skipSpace() {
            while p < bytes.count {
                let c = bytes[p]
                guard c == 0x20 || c == 0x0A || c == 0x09 || c == 0x0D else { return }
                p += 1
            }
        }

        func fail(_ message: String) -> ParseError { ParseError(offset: p, message: message) }

        /// Writes one value; returns its BSON type.
        mutating func value(depth: Int, _ w: inout BSONWriter) throws(ParseError) -> UInt8 {
            guard depth < 100 else { throw fail("nesting deeper than 100") }
            guard p < bytes.count else { throw fail("unexpected end") }
            switch bytes[p] {
            case UInt8(ascii: "{"):
                p += 1
                let start = w.beginDocument()
                skipSpace()
                if p < bytes.count && bytes[p] == UInt8(ascii: "}") { p += 1; w.endDocument(start); return 0x03 }
                while true {
                    skipSpace()
                    guard p < bytes.count, bytes[p] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let typeAt = w.count
                    w.byte(0)
                    try string(&w, asKey: true)
                    skipSpace()
                    guard p < bytes.count, bytes[p] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    p += 1
                    skipSpace()
                    w.patch(typeAt, try value(depth: depth + 1, &w))
                    skipSpace()
                    guard p < bytes.count else { throw fail("unexpected end") }
                    if bytes[p] == UInt8(ascii: ",") { p += 1; continue }
                    if bytes[p] == UInt8(ascii: "}") { p += 1; w.endDocument(start); return 0x03 }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                p += 1
                let start = w.beginDocument()
                skipSpace()
                if p < bytes.count && bytes[p] == UInt8(ascii: "]") { p += 1; w.endDocument(start); return 0x04 }
                var index = 0
                while true {
                    skipSpace()
                    let typeAt = w.count
                    w.element(0, index: index)
                    w.patch(typeAt, try value(depth: depth + 1, &w))
                    index += 1
                    skipSpace()
                    guard p < bytes.count else { throw fail("unexpected end") }
                    if bytes[p] == UInt8(ascii: ",") { p += 1; continue }
                    if bytes[p] == UInt8(ascii: "]") { p += 1; w.endDocument(start); return 0x04 }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                try string(&w, asKey: false)
                return 0x02
            case UInt8(ascii: "t"): try literal("true"); w.byte(1); return 0x08
            case UInt8(ascii: "f"): try literal("false"); w.byte(0); return 0x08
            case UInt8(ascii: "n"): try literal("null"); return 0x0A
            default:
                return try number(&w)
            }
        }

        mutating func literal(_ word: StaticString) throws(ParseError) {
            let utf8 = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for c in utf8 {
                guard p < bytes.count, bytes[p] == c else { throw fail("invalid literal") }
                p += 1
            }
        }

        mutating func number(_ w: inout BSONWriter) throws(ParseError) -> UInt8 {
            let start = p
            var isInteger = true
            if p < bytes.count && bytes[p] == UInt8(ascii: "-") { p += 1 }
            while p < bytes.count {
                let c = bytes[p]
                if c >= 48 && c <= 57 { p += 1; continue }
                if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                    isInteger = false
                    p += 1
                    continue
                }
                break
            }
            guard p > start else { throw fail("unexpected character") }
            let text = UnsafeBufferPointer(rebasing: bytes[start..<p])
            if isInteger, let i = TextValueDecoder.parseInt(text) {
                if let small = Int32(exactly: i) {
                    w.littleEndian(small)
                    return 0x10
                }
                w.littleEndian(i)
                return 0x12
            }
            let string = String(decoding: text, as: UTF8.self)
            guard let d = Double(string), d.isFinite else { throw ParseError(offset: start, message: "invalid number \(string)") }
            w.littleEndian(d.bitPattern)
            return 0x01
        }

        /// A string from its opening quote: as a string value, or as a key (C string, NUL bytes dropped). Text
        /// without escapes is copied straight from the input.
        mutating func string(_ w: inout BSONWriter, asKey: Bool) throws(ParseError) {
            p += 1
            let start = p
            var ascii = true
            while p < bytes.count {
                let c = bytes[p]
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { break }
                ascii = ascii && c < 0x80
                p += 1
            }
            guard p < bytes.count else { throw fail("unterminated string") }
            if bytes[p] == UInt8(ascii: "\"") {
                let span = UnsafeBufferPointer(rebasing: bytes[start..<p])
                p += 1
                guard ascii || String(validating: span, as: UTF8.self) != nil else { throw fail("invalid UTF-8 in string") }
                emit(span, &w, asKey: asKey)
                return
            }
            p = start
            let decoded: [UInt8]
            do { decoded = try JSONString.read(bytes, at: &p) } catch { throw fail(error.reason) }
            guard String(validating: decoded, as: UTF8.self) != nil else { throw fail("invalid UTF-8 in string") }
            decoded.withUnsafeBufferPointer { emit($0, &w, asKey: asKey) }
        }

        private func emit(_ utf8: UnsafeBufferPointer<UInt8>, _ w: inout BSONWriter, asKey: Bool) {
            if asKey {
                for c in utf8 where c != 0 { w.byte(c) }
                w.byte(0)
            } else {
                w.stringValue(utf8)
            }
        }
    }
}
