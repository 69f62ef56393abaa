import BSON

/// A strict JSON parser that produces BSON directly: integers become int32/int64 by size, other numbers
/// double, objects documents (key order kept), arrays arrays. Used for json/jsonb/SUPER columns.
public enum JSONToBSON {
    public struct ParseError: Error, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "\(message) at byte \(offset)" }
    }

    public static func parse(_ text: UnsafeBufferPointer<UInt8>) throws -> BSON {
        var parser = Parser(bytes: text)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.p == text.count else { throw ParseError(offset: parser.p, message: "trailing characters") }
        return value
    }

    public static func parse(_ text: String) throws -> BSON {
        var copy = text
        return try copy.withUTF8 { try parse($0) }
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var p = 0

        mutating func skipSpace() {
            while p < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[p]) { p += 1 }
        }

        func fail(_ message: String) -> ParseError { ParseError(offset: p, message: message) }

        mutating func value(depth: Int) throws -> BSON {
            guard depth < 100 else { throw fail("nesting deeper than 100") }
            guard p < bytes.count else { throw fail("unexpected end") }
            switch bytes[p] {
            case UInt8(ascii: "{"):
                p += 1
                var doc = Document()
                skipSpace()
                if p < bytes.count && bytes[p] == UInt8(ascii: "}") { p += 1; return .document(doc) }
                while true {
                    skipSpace()
                    guard p < bytes.count, bytes[p] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let key = try string()
                    skipSpace()
                    guard p < bytes.count, bytes[p] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    p += 1
                    skipSpace()
                    doc.append(key, try value(depth: depth + 1))
                    skipSpace()
                    guard p < bytes.count else { throw fail("unexpected end") }
                    if bytes[p] == UInt8(ascii: ",") { p += 1; continue }
                    if bytes[p] == UInt8(ascii: "}") { p += 1; return .document(doc) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                p += 1
                var items: [BSON] = []
                skipSpace()
                if p < bytes.count && bytes[p] == UInt8(ascii: "]") { p += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard p < bytes.count else { throw fail("unexpected end") }
                    if bytes[p] == UInt8(ascii: ",") { p += 1; continue }
                    if bytes[p] == UInt8(ascii: "]") { p += 1; return .array(items) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default:
                return try number()
            }
        }

        mutating func literal(_ word: String) throws {
            for c in word.utf8 {
                guard p < bytes.count, bytes[p] == c else { throw fail("invalid literal") }
                p += 1
            }
        }

        mutating func number() throws -> BSON {
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
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<p]), as: UTF8.self)
            if isInteger, let i = Int64(text) {
                return Int32(exactly: i).map(BSON.int32) ?? .int64(i)
            }
            guard let d = Double(text), d.isFinite else { throw ParseError(offset: start, message: "invalid number \(text)") }
            return .double(d)
        }

        mutating func string() throws -> String {
            p += 1
            let out: [UInt8]
            do {
                out = try JSONString.read(bytes, at: &p)
            } catch {
                throw fail(error.reason)
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
            return s
        }
    }
}
