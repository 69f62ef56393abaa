/// The few values S3 and STS answers carry (`<Key>`, `<UploadId>`, `<Code>`, …), read by tag. Their documents
/// are flat and machine-written; a full XML parser would add a dependency for nothing.
enum XMLText {
    /// The text of every `<tag>…</tag>`, entities decoded.
    static func all(_ tag: String, in xml: Substring) -> [String] {
        var out: [String] = []
        var rest = xml
        while let open = rest.range(of: "<\(tag)>") {
            guard let close = rest[open.upperBound...].range(of: "</\(tag)>") else { break }
            out.append(decode(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func first(_ tag: String, in xml: String) -> String? { all(tag, in: xml[...]).first }

    /// The inner text of each `<tag>` element (for repeated blocks such as `<Contents>`).
    static func blocks(_ tag: String, in xml: String) -> [Substring] {
        var out: [Substring] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(tag)>") {
            guard let close = rest[open.upperBound...].range(of: "</\(tag)>") else { break }
            out.append(rest[open.upperBound..<close.lowerBound])
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func decode(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { out += rest[amp...]; return out }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                if entity.hasPrefix("#x"), let n = UInt32(entity.dropFirst(2), radix: 16), let s = Unicode.Scalar(n) { out.unicodeScalars.append(s) }
                else if entity.hasPrefix("#"), let n = UInt32(entity.dropFirst()), let s = Unicode.Scalar(n) { out.unicodeScalars.append(s) }
                else { out += rest[amp...semi] }
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
