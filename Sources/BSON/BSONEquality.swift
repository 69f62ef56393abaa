/// Equality and hashing by value as BSON stores it: strings (and a regex's pattern and options) by their UTF-8
/// bytes, as MongoDB, Redshift and PostgreSQL compare keys. The synthesized conformance used Swift's `String ==`,
/// which calls canonically equivalent spellings (`é` and `e` + U+0301) equal: two rows' keys became one and a
/// batch kept only one of them. Every other case compares as the synthesized conformance did.
extension BSON {
    public static func == (a: BSON, b: BSON) -> Bool {
        switch (a, b) {
        case (.double(let x), .double(let y)): x == y
        case (.string(let x), .string(let y)): x.utf8.elementsEqual(y.utf8)
        case (.document(let x), .document(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.binary(let x), .binary(let y)): x == y
        case (.undefined, .undefined), (.null, .null), (.minKey, .minKey), (.maxKey, .maxKey): true
        case (.objectId(let x), .objectId(let y)): x == y
        case (.bool(let x), .bool(let y)): x == y
        case (.datetime(let x), .datetime(let y)): x == y
        case (.regex(let p, let o), .regex(let q, let r)): p.utf8.elementsEqual(q.utf8) && o.utf8.elementsEqual(r.utf8)
        case (.int32(let x), .int32(let y)): x == y
        case (.timestamp(let x), .timestamp(let y)): x == y
        case (.int64(let x), .int64(let y)): x == y
        case (.decimal128(let x), .decimal128(let y)): x == y
        case (.opaque(let t, let x), .opaque(let u, let y)): t == u && x == y
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(typeCode)
        switch self {
        case .double(let x): hasher.combine(x)
        case .string(let x): Self.combineUTF8(x, into: &hasher)
        case .document(let x): hasher.combine(x)
        case .array(let x): hasher.combine(x)
        case .binary(let x): hasher.combine(x)
        case .undefined, .null, .minKey, .maxKey: break
        case .objectId(let x): hasher.combine(x)
        case .bool(let x): hasher.combine(x)
        case .datetime(let x): hasher.combine(x)
        case .regex(let pattern, let options):
            Self.combineUTF8(pattern, into: &hasher)
            Self.combineUTF8(options, into: &hasher)
        case .int32(let x): hasher.combine(x)
        case .timestamp(let x): hasher.combine(x)
        case .int64(let x): hasher.combine(x)
        case .decimal128(let x): hasher.combine(x)
        case .opaque(_, let bytes): hasher.combine(bytes)
        }
    }

    /// The bytes and their count (so that a regex's two strings cannot trade bytes and hash alike).
    private static func combineUTF8(_ text: String, into hasher: inout Hasher) {
        var text = text
        hasher.combine(text.utf8.count)
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
