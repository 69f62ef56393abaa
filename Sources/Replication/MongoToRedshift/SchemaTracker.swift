import BSON

/// A target table's columns, in order (`_id` first), with the Mongo field path each comes from.
public struct TableSchema: Sendable, Equatable {
    public struct Column: Sendable, Equatable {
        public var name: String
        /// Dotted Mongo path (`a.b`); `_id` for the key.
        public var path: String
        public var type: ColumnType
        public init(name: String, path: String, type: ColumnType) {
            self.name = name
            self.path = path
            self.type = type
        }
    }

    public var columns: [Column] = []
    public init(columns: [Column] = []) { self.columns = columns }

    public func index(ofPath path: String) -> Int? { columns.firstIndex { $0.path == path } }
}

/// What changed in the schema after observing documents; each becomes DDL before the data is loaded.
public enum SchemaChange: Sendable, Equatable {
    case addColumn(TableSchema.Column)
    case widenColumn(TableSchema.Column, from: ColumnType)
}

/// Infers and evolves the target schema from documents (docs/ARCHITECTURE.md, "Mongo → Redshift"): fields down to `flatten` levels become
/// columns, deeper values nested (SUPER / jsonb); types widen along `ColumnType`'s lattice; names are sanitised
/// and two fields that land on one name are an error naming both.
public struct SchemaTracker: Sendable {
    public private(set) var schema: TableSchema
    public let flatten: Int
    /// `schema`'s column per Mongo path (a row is placed by lookup, not by scanning the columns).
    private var columnByPath: [String: Int]

    public init(schema: TableSchema = TableSchema(), flatten: Int) {
        self.schema = schema
        self.flatten = max(0, flatten)
        columnByPath = Self.index(schema)
    }

    private static func index(_ schema: TableSchema) -> [String: Int] {
        Dictionary(schema.columns.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public struct CollisionError: Error, CustomStringConvertible, Sendable {
        public var first: String
        public var second: String
        public var column: String
        public var description: String { "fields \"\(first)\" and \"\(second)\" both map to column \"\(column)\"; rename one in the source" }
    }

    /// The (path, value) pairs a document contributes. `flatten: 0` keeps the whole document in one `doc` column.
    public func fields(of document: Document) -> [(path: String, value: BSON)] {
        var out: [(path: String, value: BSON)] = []
        if flatten == 0 {
            out.append(("_id", document["_id"] ?? .null))
            out.append(("doc", .document(document.removing(["_id"]))))
            return out
        }
        func walk(_ doc: Document, prefix: String, depth: Int) {
            for (key, value) in doc {
                let path = prefix.isEmpty ? key : prefix + "." + key
                if case .document(let sub) = value, depth < flatten, path != "_id", !sub.isEmpty {
                    walk(sub, prefix: path, depth: depth + 1)
                } else {
                    out.append((path, value))
                }
            }
        }
        walk(document, prefix: "", depth: 1)
        return out
    }

    /// Widens the schema to hold every document; returns the changes (new columns, wider types) in order.
    public mutating func observe(_ documents: [Document]) throws(CollisionError) -> [SchemaChange] {
        var changes: [SchemaChange] = []
        var byName: [String: Int] = Dictionary(uniqueKeysWithValues: schema.columns.enumerated().map { ($1.name, $0) })
        var byPath: [String: Int] = Dictionary(uniqueKeysWithValues: schema.columns.enumerated().map { ($1.path, $0) })
        var added: Set<String> = []
        var widened: [String: ColumnType] = [:]
        for document in documents {
            for (path, value) in fields(of: document) {
                let isKey = path == "_id"
                let wanted = isKey ? ColumnType.ofKey(value) : ColumnType.of(value)
                if let i = byPath[path] {
                    guard let wanted else { continue }
                    let old = schema.columns[i].type
                    let new = isKey ? old.widenedKey(with: wanted) : old.widened(with: wanted)
                    if new != old {
                        if !added.contains(schema.columns[i].name) && widened[schema.columns[i].name] == nil {
                            widened[schema.columns[i].name] = old
                        }
                        schema.columns[i].type = new
                    }
                    continue
                }
                let name = path == "_id" ? "_id" : ColumnNaming.sanitize(path.replacingOccurrences(of: ".", with: "_"))
                if let other = byName[name] {
                    throw CollisionError(first: schema.columns[other].path, second: path, column: name)
                }
                // A field seen only as null so far still gets a column (type refined when a value arrives).
                schema.columns.append(TableSchema.Column(name: name, path: path, type: wanted ?? .varchar(16)))
                byName[name] = schema.columns.count - 1
                byPath[path] = schema.columns.count - 1
                added.insert(name)
            }
        }
        if let id = byPath["_id"], id != 0 {
            // `_id` leads the table.
            let column = schema.columns.remove(at: id)
            schema.columns.insert(column, at: 0)
        }
        columnByPath = Self.index(schema)
        for column in schema.columns {
            if added.contains(column.name) { changes.append(.addColumn(column)) }
            else if let old = widened[column.name] { changes.append(.widenColumn(column, from: old)) }
        }
        return changes
    }

    /// The row of a document, aligned with `schema.columns` (nil = NULL).
    public func row(of document: Document) -> [BSON?] {
        var values = [BSON?](repeating: nil, count: schema.columns.count)
        for (path, value) in fields(of: document) {
            if let i = columnByPath[path], !value.isNull { values[i] = value }
        }
        return values
    }
}
