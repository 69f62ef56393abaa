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
    /// `schema`'s column per Mongo path and per name (a field is placed by lookup, not by scanning the columns).
    private var columnByPath: [String: Int]
    private var columnByName: [String: Int]

    /// New columns' names are at most this long (`ColumnNaming.maxBytes(dialect)`).
    public let maxNameBytes: Int

    public init(schema: TableSchema = TableSchema(), flatten: Int, maxNameBytes: Int = ColumnNaming.maxBytes) {
        self.schema = schema
        self.flatten = max(0, flatten)
        self.maxNameBytes = maxNameBytes
        columnByPath = [:]
        columnByName = [:]
        reindex()
    }

    private mutating func reindex() {
        columnByPath = Dictionary(schema.columns.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { first, _ in first })
        columnByName = Dictionary(schema.columns.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public struct CollisionError: Error, CustomStringConvertible, Sendable {
        public var first: String
        public var second: String
        public var column: String
        public var description: String { "fields \"\(first)\" and \"\(second)\" both map to column \"\(column)\"; rename one in the source" }
    }

    /// Calls `body` with each (path, value) pair a document contributes, in document order, without collecting them
    /// or decoding the values (each is read in place and valid during its call). `flatten: 0` keeps the whole
    /// document in one `doc` column.
    public static func forEachField<E: Error>(of document: Document, flatten: Int, _ body: (String, BSONValueView) throws(E) -> Void) throws(E) {
        try walkFields(of: document, flatten: flatten, visit: body, then: { () throws(E) in })
    }

    /// `forEachField`, then `finish` — the fields' views stay valid until `finish` returns (a row is written from
    /// them there).
    public static func walkFields<R, E: Error>(of document: Document, flatten: Int, visit: (String, BSONValueView) throws(E) -> Void,
                                              then finish: () throws(E) -> R) throws(E) -> R {
        if flatten == 0 {
            return try (document["_id"] ?? .null).withView { (key) throws(E) in
                try visit("_id", key)
                return try document.removing(["_id"]).withView { (rest) throws(E) in
                    try visit("doc", rest)
                    return try finish()
                }
            }
        }
        func walk(_ doc: BSONValueView, prefix: String, depth: Int) throws(E) {
            try doc.forEachElement { (key, value) throws(E) in
                let name = String(decoding: key, as: UTF8.self)
                let path = prefix.isEmpty ? name : prefix + "." + name
                if value.isDocument, depth < flatten, path != "_id", value.bytes.count > 5 {
                    try walk(value, prefix: path, depth: depth + 1)
                } else {
                    try visit(path, value)
                }
            }
        }
        return try document.withView { (root) throws(E) in
            try walk(root, prefix: "", depth: 1)
            return try finish()
        }
    }

    /// The column a field path lands in: dots become underscores, then `ColumnNaming`'s rules; `_id` stays.
    public static func columnName(forPath path: String, maxBytes: Int = ColumnNaming.maxBytes) -> String {
        path == "_id" ? "_id" : ColumnNaming.sanitize(path.replacingOccurrences(of: ".", with: "_"), maxBytes: maxBytes)
    }

    /// Widens the schema to hold every document; returns the changes (new columns, wider types) in order.
    public mutating func observe(_ documents: [Document]) throws(CollisionError) -> [SchemaChange] {
        let previous = schema
        for document in documents {
            try Self.forEachField(of: document, flatten: flatten) { (path, value) throws(CollisionError) in _ = try learn(path, value) }
        }
        return changes(since: previous)
    }

    /// What `learn` returns for a field seen only as null so far: no column yet, nothing to write (the row's
    /// missing columns read NULL).
    public static let noColumn = -1

    /// Widens the schema to hold one field. Returns the field's column (`noColumn` for a null field without
    /// one), or nil when the schema changed (a new column or a wider type: column positions may have moved).
    public mutating func learn(_ path: String, _ value: BSONValueView) throws(CollisionError) -> Int? {
        let isKey = path == "_id"
        let wanted = isKey ? ColumnType.ofKey(value) : ColumnType.of(value)
        if let i = columnByPath[path] {
            guard let wanted else { return i }
            let old = schema.columns[i].type
            let new = isKey ? old.widenedKey(with: wanted) : old.widened(with: wanted)
            if new == old { return i }
            schema.columns[i].type = new
            return nil
        }
        // A field seen only as null so far gets no column: created as text, it stayed text for good (types only
        // widen) once the field's values came — integers, dates and booleans stored as strings.
        guard let wanted else { return Self.noColumn }
        let name = Self.columnName(forPath: path, maxBytes: maxNameBytes)
        if let other = columnByName[name] {
            throw CollisionError(first: schema.columns[other].path, second: path, column: name)
        }
        // `_id` leads.
        let column = TableSchema.Column(name: name, path: path, type: wanted)
        if isKey {
            schema.columns.insert(column, at: 0)
            reindex()
        } else {
            schema.columns.append(column)
            columnByPath[path] = schema.columns.count - 1
            columnByName[name] = schema.columns.count - 1
        }
        return nil
    }

    /// What turned `previous` into the current schema, in column order: columns added, and columns whose type
    /// widened (from their type in `previous`) — each becomes DDL before the data is loaded.
    public func changes(since previous: TableSchema) -> [SchemaChange] {
        let before = Dictionary(previous.columns.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
        return schema.columns.compactMap { column in
            guard let old = before[column.name] else { return .addColumn(column) }
            return old == column.type ? nil : .widenColumn(column, from: old)
        }
    }
}
