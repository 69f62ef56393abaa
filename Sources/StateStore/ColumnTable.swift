/// The `columns` table: a Mongo → Redshift stream's target columns, in order, with their source paths and types.
struct ColumnTable {
    let db: StateDatabase

    func load(_ stream: String) throws -> [StoredColumn] {
        try db.query("SELECT name, source_path, type FROM columns WHERE stream = ? ORDER BY position", [.text(stream)]).map {
            StoredColumn(name: $0[0].text ?? "", path: $0[1].text ?? "", type: $0[2].text ?? "")
        }
    }

    func save(_ stream: String, _ columns: [StoredColumn]) throws {
        try clear(stream)
        for (i, c) in columns.enumerated() {
            try db.query("INSERT INTO columns (stream, name, source_path, type, position) VALUES (?, ?, ?, ?, ?)",
                         [.text(stream), .text(c.name), .text(c.path), .text(c.type), .integer(Int64(i))])
        }
    }

    func clear(_ stream: String) throws {
        try db.query("DELETE FROM columns WHERE stream = ?", [.text(stream)])
    }
}
