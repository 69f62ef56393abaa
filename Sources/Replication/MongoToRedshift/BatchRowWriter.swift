import BSON

/// Writes a batch's rows for the target from its documents, read in place (docs/ARCHITECTURE.md, "Mongo →
/// Redshift"): PostgreSQL's COPY text, or Redshift's staged values (INSERT parameters, COPY's JSON lines). Each
/// document is walked once: its fields are learned into the schema tracker and its values placed by column.
struct BatchRowWriter {
    /// What became of a document.
    enum Outcome {
        case written
        /// The document widened the schema or added a column: rows written so far no longer fit (nothing written).
        case schemaChanged
        /// A value the target cannot hold: the row was left out (dead-lettered by the caller).
        case tooLarge(ValueText.TooLarge)
    }

    let dialect: SQLDialect
    /// The schema rows are written for.
    let schema: TableSchema
    private(set) var copyText: CopyText
    private(set) var rows: StagedRows
    /// The `_id` column's index (it leads; `KeyText` writes it).
    private let keyIndex: Int?
    /// The current document's values by column (views into it; valid during `add` only).
    private var values: [BSONValueView?] = []

    init(dialect: SQLDialect, schema: TableSchema, capacity: Int) {
        self.dialect = dialect
        self.schema = schema
        copyText = CopyText(reservingCapacity: dialect == .postgres && !schema.columns.isEmpty ? capacity : 0)
        rows = StagedRows(width: schema.columns.count + 1)
        keyIndex = schema.columns.first?.path == "_id" ? 0 : nil
    }

    var rowCount: Int { dialect == .postgres ? copyText.rows : rows.count }

    /// Learns `document`'s fields into `tracker` and, while the schema still holds it, writes its row.
    mutating func add(_ document: Document, learningInto tracker: inout SchemaTracker) throws(SchemaTracker.CollisionError) -> Outcome {
        values.removeAll(keepingCapacity: true)
        values.append(contentsOf: repeatElement(nil, count: schema.columns.count))
        var changed = false
        let flatten = tracker.flatten
        // The views die with the walk: none is left behind.
        defer { values.removeAll(keepingCapacity: true) }
        return try SchemaTracker.walkFields(of: document, flatten: flatten, visit: { (path, value) throws(SchemaTracker.CollisionError) in
            guard let column = try tracker.learn(path, value) else { changed = true; return }
            // A null `_id` is a key like any other (`KeyText`); a null field is no value.
            if !changed && (!value.isNull || column == keyIndex) { values[column] = value }
        }, then: { () throws(SchemaTracker.CollisionError) -> Outcome in
            // Still inside the walk: the values are views into the document.
            if changed { return .schemaChanged }
            do throws(ValueText.TooLarge) {
                try writeUpsert()
                return .written
            } catch {
                copyText.abandonRow()
                rows.abandonRow()
                return .tooLarge(error)
            }
        })
    }

    /// A delete's row: the key, NULLs, op `d`. None for a key no row of the table can have (a type or a length
    /// its key column does not hold: its document was never copied, e.g. deleted before the snapshot reached it)
    /// — written, it would fail the load of the whole batch.
    mutating func addDelete(_ key: BSON) {
        let idType = schema.columns.first?.type ?? .varchar(16)
        guard key.withView({ KeyText.canHold(idType, $0) }) else { return }
        var text = PlainText()
        guard (try? KeyText.write(key, as: idType, column: "_id", byteaPrefix: dialect == .postgres, to: &text)) != nil else { return }
        let width = schema.columns.count
        guard dialect == .postgres else {
            rows.append(value: String(decoding: text.bytes, as: UTF8.self))
            for _ in 1..<width { rows.appendNull() }
            rows.append(value: "d")
            rows.endRow()
            return
        }
        copyText.nextColumn()
        text.bytes.withUnsafeBufferPointer { copyText.append($0) }
        for _ in 1..<width {
            copyText.nextColumn()
            copyText.appendNull()
        }
        copyText.nextColumn()
        copyText.append(UInt8(ascii: "d"))
        copyText.endRow()
    }

    /// The current document's row. Throws `ValueText.TooLarge` for a value the target cannot hold.
    private mutating func writeUpsert() throws(ValueText.TooLarge) {
        if dialect == .postgres {
            for (index, (value, column)) in zip(values, schema.columns).enumerated() {
                copyText.nextColumn()
                if let value {
                    if index == keyIndex {
                        try KeyText.write(value, as: column.type, column: column.name, byteaPrefix: true, to: &copyText)
                    } else {
                        try ValueText.write(value, as: column.type, column: column.name, byteaPrefix: true, to: &copyText)
                    }
                } else {
                    copyText.appendNull()
                }
            }
            copyText.nextColumn()
            copyText.append(UInt8(ascii: "u"))
            copyText.endRow()
            return
        }
        for (index, (value, column)) in zip(values, schema.columns).enumerated() {
            guard let value else {
                rows.appendNull()
                continue
            }
            if column.type == .nested, let longest = ValueText.longestString(in: value), longest > ValueText.superStringLimit {
                throw ValueText.TooLarge(column: column.name, bytes: longest, limit: ValueText.superStringLimit,
                                         reason: "a string of \(longest) bytes inside the SUPER value exceeds Redshift's \(ValueText.superStringLimit)-byte limit")
            }
            rows.beginValue()
            if index == keyIndex {
                try KeyText.write(value, as: column.type, column: column.name, to: &rows)
            } else {
                try ValueText.write(value, as: column.type, column: column.name, to: &rows)
            }
            rows.endValue()
        }
        rows.append(value: "u")
        rows.endRow()
    }
}
