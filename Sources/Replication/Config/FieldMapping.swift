import BSON

/// A stream's `columns: {include, exclude, rename}` (docs/CONFIG.md, "Column mapping"): which source columns or
/// document fields reach the target, and under which names. Applied where rows and documents are read, so an
/// excluded field never reaches the spool.
public struct FieldMapping: Sendable, Equatable {
    /// Only these (top-level) names; nil = all. Keys, the watermark and the soft-delete column are always kept.
    public var include: [String]?
    /// Never these: top-level names, or dotted paths into subdocuments (Mongo → Redshift).
    public var exclude: [String]
    /// Top-level names given another name at the target.
    public var rename: [String: String]

    public init(include: [String]? = nil, exclude: [String] = [], rename: [String: String] = [:]) {
        self.include = include
        self.exclude = exclude
        self.rename = rename
    }

    public static let identity = FieldMapping()
    public var isIdentity: Bool { include == nil && exclude.isEmpty && rename.isEmpty }

    /// Whether a top-level name is kept (`always`: names the stream needs whatever the lists say).
    public func keeps(_ name: String, always: Set<String> = []) -> Bool {
        if always.contains(name) { return true }
        if let include, !include.contains(name) { return false }
        return !exclude.contains(name)
    }

    /// The target's name for a kept top-level name.
    public func targetName(_ name: String) -> String { rename[name] ?? name }

    /// A document as the target sees it: `_id` always kept and never renamed.
    public func apply(_ document: Document) -> Document {
        if isIdentity { return document }
        return Self.apply(document, mapping: self, excludes: exclude, topLevel: true)
    }

    private static func apply(_ document: Document, mapping: FieldMapping, excludes: [String], topLevel: Bool) -> Document {
        var out = Document(reservingCapacity: document.byteCount)
        // A field renamed onto the name of another field of the document wins over it (one field per name).
        let renamedOnto = topLevel ? Set(document.keys.filter { mapping.rename[$0] != nil && mapping.keeps($0) }.compactMap { mapping.rename[$0] }) : []
        for (name, value) in document {
            let isID = topLevel && name == "_id"
            if !isID {
                if topLevel, !mapping.keeps(name) { continue }
                if excludes.contains(name) { continue }
                if topLevel, mapping.rename[name] == nil, renamedOnto.contains(name) { continue }
            }
            let nested = excludes.compactMap { $0.hasPrefix(name + ".") ? String($0.dropFirst(name.count + 1)) : nil }
            out.append(topLevel && !isID ? mapping.targetName(name) : name, nested.isEmpty ? value : excluding(nested, from: value, mapping: mapping))
        }
        return out
    }

    /// Dotted excludes below a field: into a subdocument, or into each subdocument of an array.
    private static func excluding(_ paths: [String], from value: BSON, mapping: FieldMapping) -> BSON {
        switch value {
        case .document(let sub): .document(apply(sub, mapping: mapping, excludes: paths, topLevel: false))
        case .array(let items): .array(items.map { excluding(paths, from: $0, mapping: mapping) })
        default: value
        }
    }

    /// Problems with the lists themselves (names the source does not have are checked where it is read).
    public func problems(reserved: Set<String>) -> [String] {
        var out: [String] = []
        for (from, to) in rename.sorted(by: { $0.key < $1.key }) {
            if reserved.contains(from) { out.append("\"\(from)\" cannot be renamed") }
            if to.isEmpty || to.hasPrefix("$") || to.contains(".") || reserved.contains(to) {
                out.append("\"\(from)\" cannot be renamed to \"\(to)\" (empty, '$' prefix, '.', or a reserved name)")
            }
        }
        let targets = rename.values.sorted()
        for (i, name) in targets.enumerated() where i > 0 && targets[i - 1] == name {
            out.append("two fields renamed to \"\(name)\"")
        }
        for name in exclude + (include ?? []) where name.isEmpty { out.append("an empty name in include/exclude") }
        for name in exclude where reserved.contains(name) { out.append("\"\(name)\" cannot be excluded") }
        return out
    }
}
