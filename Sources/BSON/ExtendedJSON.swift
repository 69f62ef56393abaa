/// MongoDB Extended JSON v2 (relaxed) rendering, used for logs, dead-letter files and JSON columns.
public enum ExtendedJSON {
    public static func relaxed(_ document: Document) -> String {
        var out = ""
        writeDocument(document, into: &out)
        return out
    }

    public static func relaxed(_ value: BSON) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    static func writeDocument(_ document: Document, into out: inout String) {
        out += "{"
        var first = true
        for (key, value) in document {
            if !first { out += ", " }
            first = false
            writeString(key, into: &out)
            out += ": "
            write(value, into: &out)
        }
        out += "}"
    }

    static func write(_ value: BSON, into out: inout String) {
        switch value {
        case .double(let d):
            if d.isNaN { out += #"{"$numberDouble": "NaN"}"# }
            else if d.isInfinite { out += d > 0 ? #"{"$numberDouble": "Infinity"}"# : #"{"$numberDouble": "-Infinity"}"# }
            else if d == d.rounded() && abs(d) < 1e15 { out += String(Int64(d)) + ".0" }
            else { out += "\(d)" }
        case .string(let s): writeString(s, into: &out)
        case .document(let d): writeDocument(d, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                write(item, into: &out)
            }
            out += "]"
        case .binary(let b):
            out += #"{"$binary": {"base64": ""# + base64(b.data) + #"", "subType": ""# + String(format2: b.subtype) + #""}}"#
        case .undefined: out += #"{"$undefined": true}"#
        case .objectId(let oid): out += #"{"$oid": ""# + oid.description + #""}"#
        case .bool(let b): out += b ? "true" : "false"
        case .datetime(let ms):
            if let iso = ISODate.format(milliseconds: ms) { out += #"{"$date": ""# + iso + #""}"# }
            else { out += #"{"$date": {"$numberLong": ""# + String(ms) + #""}}"# }
        case .null: out += "null"
        case .regex(let pattern, let options):
            out += #"{"$regularExpression": {"pattern": "#
            writeString(pattern, into: &out)
            out += #", "options": "#
            writeString(options, into: &out)
            out += "}}"
        case .int32(let i): out += String(i)
        case .timestamp(let t): out += #"{"$timestamp": {"t": \#(t.seconds), "i": \#(t.increment)}}"#
        case .int64(let i): out += String(i)
        case .decimal128(let d): out += #"{"$numberDecimal": ""# + d.description + #""}"#
        case .minKey: out += #"{"$minKey": 1}"#
        case .maxKey: out += #"{"$maxKey": 1}"#
        case .opaque(let type, _): out += #"{"$unsupportedType": \#(type)}"#
        }
    }

    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    public static func base64(_ data: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = ""
        var i = 0
        while i < data.count {
            let b0 = data[i], b1 = i + 1 < data.count ? data[i + 1] : 0, b2 = i + 2 < data.count ? data[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < data.count ? table[Int((b1 & 0xF) << 2 | b2 >> 6)] : "=")
            out.append(i + 2 < data.count ? table[Int(b2 & 0x3F)] : "=")
            i += 3
        }
        return out
    }
}

/// Civil-calendar conversions for BSON dates (proleptic Gregorian, UTC), without Foundation's formatters.
public enum ISODate {
    /// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func civil(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// `2024-01-02T03:04:05Z` (whole seconds since the epoch, UTC).
    public static func format(seconds: Int64) -> String {
        guard let text = format(milliseconds: seconds * 1000) else { return String(seconds) }
        return text.dropLast(5) + "Z"
    }

    /// `2024-01-02T03:04:05.123Z` for years 1970…9999 (Extended JSON's relaxed range); nil outside.
    public static func format(milliseconds ms: Int64) -> String? {
        guard ms >= 0 && ms < 253_402_300_800_000 else { return nil }
        let totalSeconds = ms / 1000, millis = Int(ms % 1000)
        let days = Int(totalSeconds / 86400), secondOfDay = Int(totalSeconds % 86400)
        let (y, m, d) = civil(days: days)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(millis, 3))Z"
    }
}
