import BSON
import MongoClient
import PostgresClient

/// Which of a page of target `_id`s still have a source row — any key shape: one column of any type, or a
/// composite key (`_id` a subdocument of the key columns). Values are bound parameters, compared by the source in
/// the column's type, and the rows found decoded back to `_id`s exactly as `RowEncoder` builds them. Used by the
/// hard-delete reconcile (keys that are not a single integer) and by `verify`.
struct SourceKeyLookup: Sendable {
    let table: SourceTable
    /// Rows that count as present (soft-delete liveness, `where:`); nil: every row.
    let condition: String?

    /// Whether every key column's Mongo form is exact, so a lookup by it finds the row: integers, numerics, text,
    /// dates, booleans. Timestamps (milliseconds in Mongo, microseconds at the source) and floats are not: a row
    /// would look missing and its document be deleted.
    static func isExact(_ table: SourceTable) -> Bool {
        table.keyIndexes.allSatisfy { i in
            let type = table.columns[i].typeOID
            return ![PostgresType.timestamp, PostgresType.timestamptz, PostgresType.float4, PostgresType.float8, PostgresType.time].contains(type)
        }
    }

    /// Parameters per query: Redshift and PostgreSQL both take far more, but a statement stays small.
    static let parametersPerQuery = 1_000

    func present(_ ids: [BSON], on pg: PostgresConnection) async throws -> Set<BSON> {
        let width = table.keyIndexes.count
        let keys = table.keyIndexes.map { table.columns[$0] }
        var found = Set<BSON>()
        let perQuery = max(1, Self.parametersPerQuery / width)
        for start in stride(from: 0, to: ids.count, by: perQuery) {
            let chunk = ids[start..<min(ids.count, start + perQuery)]
            var params: [String?] = []
            var terms: [String] = []
            for id in chunk {
                guard let parts = texts(of: id) else { continue }
                let term = zip(keys, parts).map { column, text -> String in
                    params.append(text)
                    return "\(SQL.identifier(column.name)) = $\(params.count)"
                }
                terms.append(width == 1 ? term[0] : "(" + term.joined(separator: " AND ") + ")")
            }
            if terms.isEmpty { continue }
            let select = keys.map { SQL.identifier($0.name) }.joined(separator: ", ")
            let sql = "SELECT \(select) FROM \(table.qualifiedName) WHERE (\(terms.joined(separator: " OR ")))"
                + (condition.map { " AND \($0)" } ?? "")
            for row in try await pg.query(sql, params).rows {
                if let id = decode(row, keys) { found.insert(id) }
            }
        }
        return found
    }

    /// The key columns' texts of an `_id` (nil: not a key of this table's shape).
    func texts(of id: BSON) -> [String]? {
        if table.keyIndexes.count == 1 { return [ValueText.scalarText(id)] }
        guard case .document(let doc) = id else { return nil }
        var out: [String] = []
        for i in table.keyIndexes {
            guard let value = doc[table.columns[i].name] else { return nil }
            out.append(ValueText.scalarText(value))
        }
        return out
    }

    private func decode(_ row: [String?], _ keys: [PostgresColumn]) -> BSON? {
        var values: [BSON] = []
        for (text, column) in zip(row, keys) {
            guard var text else { return nil }
            guard let value = try? text.withUTF8({ try TextValueDecoder.decode($0, type: column.typeOID, column: column.name) }) else { return nil }
            values.append(value)
        }
        if values.count == 1 { return values[0] }
        return .document(Document(elements: zip(keys, values).map { ($0.name, $1) }))
    }
}

/// The `_id`s of a collection in pages, bracket by bracket (MongoDB compares within one type bracket only, so a
/// keyset `_id > last` must not cross brackets).
struct TargetKeyWalk: Sendable {
    let client: MongoClient
    let database: String
    let collection: String
    var pageSize = 5_000

    /// Calls `page` with each page of `_id`s until it returns false or the collection ends.
    func forEachPage(_ page: ([BSON]) async throws -> Bool) async throws {
        for bracket in TypeBracket.allCases {
            var after: BSON?
            while true {
                let ids = try await client.findAll(database: database, collection: collection, filter: bracket.filter(after: after, upTo: nil),
                                                   sort: ["_id": 1], projection: ["_id": 1], limit: pageSize).compactMap { $0["_id"] }
                if ids.isEmpty { break }
                if try await !page(ids) { return }
                after = ids.last
                if ids.count < pageSize { break }
            }
        }
    }
}
