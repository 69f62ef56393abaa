import BSON

/// A Mongo → Redshift stream's `match:` (docs/CONFIG.md, "Filters"): a `$match` document. The snapshot sends it
/// to the server; the change-stream tailer evaluates it on each full document, so a document that stops matching
/// becomes a delete (a `$match` stage in the change stream would only hide it). Evaluated with MongoDB's rules for
/// the operators it accepts — equality (arrays match an element), `$eq $ne $gt $gte $lt $lte $in $nin $exists`,
/// `$and $or $nor`, dotted paths through subdocuments and arrays of them; comparisons within one type bracket.
/// Anything else is refused when the configuration is read.
public struct MatchFilter: Sendable, Equatable {
    public struct Unsupported: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The `$match` document as written (what the snapshot sends).
    public let document: Document
    private let root: Node

    indirect enum Node: Sendable, Equatable {
        case all([Node])
        case any([Node])
        case none([Node])
        case field(path: [String], tests: [Test])
    }

    enum Test: Sendable, Equatable {
        case eq(BSON), ne(BSON), gt(BSON), gte(BSON), lt(BSON), lte(BSON), within([BSON]), notWithin([BSON]), exists(Bool)
    }

    public init(_ document: Document) throws(Unsupported) {
        self.document = document
        root = try Self.parse(document)
    }

    public static func == (a: MatchFilter, b: MatchFilter) -> Bool { a.document == b.document }

    public func matches(_ document: Document) -> Bool { Self.evaluate(root, document) }

    // MARK: parsing

    private static func parse(_ document: Document) throws(Unsupported) -> Node {
        var nodes: [Node] = []
        for (key, value) in document {
            switch key {
            case "$and", "$or", "$nor":
                guard case .array(let items) = value, !items.isEmpty else { throw Unsupported(description: "\(key) takes a non-empty list of conditions") }
                var children: [Node] = []
                for item in items {
                    guard case .document(let sub) = item else { throw Unsupported(description: "\(key) takes documents") }
                    children.append(try parse(sub))
                }
                nodes.append(key == "$and" ? .all(children) : key == "$or" ? .any(children) : .none(children))
            case _ where key.hasPrefix("$"):
                throw Unsupported(description: "\(key) is not supported in match: (use field conditions, $and, $or, $nor)")
            default:
                nodes.append(.field(path: key.split(separator: ".").map(String.init), tests: try tests(value, field: key)))
            }
        }
        return .all(nodes)
    }

    private static func tests(_ value: BSON, field: String) throws(Unsupported) -> [Test] {
        guard case .document(let ops) = value, let first = ops.keys.first, first.hasPrefix("$") else { return [.eq(value)] }
        var out: [Test] = []
        for (op, operand) in ops {
            switch op {
            case "$eq": out.append(.eq(operand))
            case "$ne": out.append(.ne(operand))
            case "$gt": out.append(.gt(operand))
            case "$gte": out.append(.gte(operand))
            case "$lt": out.append(.lt(operand))
            case "$lte": out.append(.lte(operand))
            case "$in", "$nin":
                guard case .array(let list) = operand else { throw Unsupported(description: "\(field): \(op) takes a list") }
                out.append(op == "$in" ? .within(list) : .notWithin(list))
            case "$exists":
                guard case .bool(let flag) = operand else { throw Unsupported(description: "\(field): $exists takes true or false") }
                out.append(.exists(flag))
            default:
                throw Unsupported(description: "\(field): \(op) is not supported in match: (use $eq $ne $gt $gte $lt $lte $in $nin $exists)")
            }
        }
        return out
    }

    // MARK: evaluation

    private static func evaluate(_ node: Node, _ doc: Document) -> Bool {
        switch node {
        case .all(let nodes): nodes.allSatisfy { evaluate($0, doc) }
        case .any(let nodes): nodes.contains { evaluate($0, doc) }
        case .none(let nodes): !nodes.contains { evaluate($0, doc) }
        case .field(let path, let tests):
            tests.allSatisfy { test(values(at: path, in: .document(doc)), $0) }
        }
    }

    /// Every value the path reaches (through arrays of subdocuments); empty when it reaches none.
    static func values(at path: ArraySlice<String>, in value: BSON) -> [BSON] {
        guard let name = path.first else { return [value] }
        switch value {
        case .document(let doc):
            guard let next = doc[name] else { return [] }
            return values(at: path.dropFirst(), in: next)
        case .array(let items):
            if let index = Int(name), index >= 0, index < items.count { return values(at: path.dropFirst(), in: items[index]) }
            return items.flatMap { item -> [BSON] in
                if case .document = item { return values(at: path, in: item) }
                return []
            }
        default:
            return []
        }
    }

    static func values(at path: [String], in value: BSON) -> [BSON] { values(at: path[...], in: value) }

    private static func test(_ found: [BSON], _ test: Test) -> Bool {
        // An array field matches by itself or by any of its elements.
        let candidates = found + found.flatMap { if case .array(let items) = $0 { return items }; return [] }
        switch test {
        case .eq(let v): return equals(candidates, v)
        case .ne(let v): return !equals(candidates, v)
        case .within(let list): return list.contains { equals(candidates, $0) }
        case .notWithin(let list): return !list.contains { equals(candidates, $0) }
        case .exists(let flag): return found.isEmpty != flag
        case .gt(let v): return candidates.contains { compare($0, v).map { $0 > 0 } ?? false }
        case .gte(let v): return candidates.contains { compare($0, v).map { $0 >= 0 } ?? false }
        case .lt(let v): return candidates.contains { compare($0, v).map { $0 < 0 } ?? false }
        case .lte(let v): return candidates.contains { compare($0, v).map { $0 <= 0 } ?? false }
        }
    }

    /// `{f: null}` matches a missing field too.
    private static func equals(_ candidates: [BSON], _ value: BSON) -> Bool {
        if value == .null && candidates.isEmpty { return true }
        return candidates.contains { compare($0, value) == 0 }
    }

    /// Within one bracket: negative, zero or positive; nil across brackets (MongoDB's comparison operators never
    /// match across types).
    static func compare(_ a: BSON, _ b: BSON) -> Int? {
        guard let ba = TypeBracket(of: a), ba == TypeBracket(of: b) else {
            if case .array = a, a == b { return 0 }
            return nil
        }
        func order<T: Comparable>(_ x: T, _ y: T) -> Int { x < y ? -1 : x > y ? 1 : 0 }
        switch (a, b) {
        case (.string(let x), .string(let y)): return order(x, y)
        case (.bool(let x), .bool(let y)): return order(x ? 1 : 0, y ? 1 : 0)
        case (.datetime(let x), .datetime(let y)): return order(x, y)
        case (.objectId(let x), .objectId(let y)): return order(x, y)
        case (.timestamp(let x), .timestamp(let y)): return order(x, y)
        case (.null, .null), (.minKey, .minKey), (.maxKey, .maxKey): return 0
        default:
            if let x = number(a), let y = number(b) { return order(x, y) }
            return a == b ? 0 : nil
        }
    }

    private static func number(_ value: BSON) -> Double? {
        switch value {
        case .int32(let v): Double(v)
        case .int64(let v): Double(v)
        case .double(let v): v
        case .decimal128(let d): Double(d.description)
        default: nil
        }
    }
}
