import BSON
import Foundation
import MongoClient
import PostgresClient

/// Compares a Mongo collection with its Redshift/PostgreSQL table value by value, each document laid out in
/// columns as its stream's `flatten` does (`SchemaTracker.forEachField`): the differing `_id`s by kind, with a
/// readable reason for the first few.
/// Memory is one page on each side, whatever the sizes: documents are read in `_id` order bracket by bracket
/// (`TypeBracket`) and matched with their rows by an `IN` list; then the table's `_id`s are read in pages and
/// looked up in the collection, to find rows whose documents are gone.
public enum TableComparison {
    public struct Result: Sendable {
        public var checked = 0
        public var changed: [BSON] = []
        public var missing: [BSON] = []
        /// Row `_id` texts present in the table but not in the collection.
        public var extra: [String] = []
        public var reasons: [String] = []
        public var differences: Int { changed.count + missing.count + extra.count }
    }

    public static func compare(mongo: MongoClient, database: String, collection: String, pg: PostgresConnection,
                               table: String, excluding: Set<String> = [], reasonLimit: Int = 10, pageSize: Int = 1000,
                               mapping: FieldMapping = .identity, match: MatchFilter? = nil, flatten: Int = 1) async throws -> Result {
        var result = Result()
        func note(_ text: String) { if result.reasons.count < reasonLimit { result.reasons.append(text) } }
        let probe = try await pg.query("SELECT * FROM \(table) LIMIT 0")
        guard let keyColumn = probe.columns.first(where: { $0.name == "_id" }) else { return result }
        // A text key column holds key text (`KeyText`); a typed one its values' text.
        let keyOID = keyColumn.typeOID
        let keyIsText = keyOID == PostgresType.varchar || keyOID == PostgresType.text
        func keyText(_ id: BSON) -> String {
            if keyIsText { return KeyText.text(id) }
            if keyOID == PostgresType.bytea, case .binary(let b) = id { return "\\x" + b.data.map { String(format2: $0) }.joined() }
            return ValueText.scalarText(id)
        }
        // A typed key's text as the server prints it and as it was bound differ (`…:20` and `…:20.000`): both
        // sides are matched in one form.
        func sameKey(_ text: String) -> String { keyIsText ? text : normalizedKey(text, keyOID) }
        let id = SQL.identifier("_id")
        // Pass 1: every document against its row.
        for bracket in TypeBracket.allCases {
            var after: BSON?
            while true {
                let docs = try await mongo.findAll(database: database, collection: collection, filter: bracket.filter(after: after, upTo: nil),
                                                   sort: ["_id": 1], limit: pageSize)
                if docs.isEmpty { break }
                after = docs.last?["_id"]
                let texts = docs.map { keyText($0["_id"] ?? .null) }
                let rows = try await pg.query("SELECT * FROM \(table) WHERE \(id) IN (\((1...texts.count).map { "$\($0)" }.joined(separator: ", ")))", texts)
                let columns = Dictionary(uniqueKeysWithValues: rows.columns.enumerated().map { ($1.name, $0) })
                let idColumn = columns["_id"]!
                var byId: [String: [String?]] = [:]
                for row in rows.rows { byId[sameKey(row[idColumn] ?? "")] = row }
                for (doc, idText) in zip(docs, texts) where !excluding.contains(idText) {
                    result.checked += 1
                    let key = doc["_id"] ?? .null
                    if let match, !match.matches(doc) {
                        // Outside `match:`: the table must not hold it.
                        result.checked -= 1
                        if byId[sameKey(idText)] != nil { result.extra.append(idText); note("outside match: but in the table: \(idText)") }
                        continue
                    }
                    guard let row = byId[sameKey(idText)] else { result.missing.append(key); note("missing in table: \(idText)"); continue }
                    if !same(mapping.apply(doc), row, flatten: flatten, columns: columns, types: rows.columns.map(\.typeOID), idText: idText, note: note) { result.changed.append(key) }
                }
                if docs.count < pageSize { break }
            }
        }
        // Pass 2: rows whose documents are gone.
        var lastID: String?
        while true {
            let page = try await pg.query("SELECT \(id) FROM \(table)\(lastID == nil ? "" : " WHERE \(id) > $1") ORDER BY \(id) LIMIT \(pageSize)",
                                          lastID.map { [$0] } ?? [])
            let texts = page.rows.compactMap { $0[0] }
            if texts.isEmpty { break }
            lastID = texts.last
            let candidates = keyIsText ? texts.flatMap(KeyText.candidates) : texts.flatMap(Self.keyCandidates)
            let found = try await mongo.findAll(database: database, collection: collection, filter: ["_id": .document(["$in": .array(candidates)])],
                                                projection: ["_id": 1])
            let present = Set(found.map { sameKey(keyText($0["_id"] ?? .null)) })
            for text in texts where !present.contains(sameKey(text)) && !excluding.contains(text) { result.extra.append(text) }
            if texts.count < pageSize { break }
        }
        if !result.extra.isEmpty { note("extra rows in table: \(result.extra.count), e.g. \(result.extra.prefix(3))") }
        return result
    }

    /// Compares one document with its row: every field (as `flatten` lays it out) with its column, and no other
    /// column holding a value.
    static func same(_ doc: Document, _ row: [String?], flatten: Int, columns: [String: Int], types: [UInt32], idText: String,
                     note: (String) -> Void) -> Bool {
        var differs = false
        var fieldsSeen = Set<String>()
        SchemaTracker.forEachField(of: doc, flatten: flatten) { path, view in
            // PostgreSQL keeps 63 bytes of a name (`ColumnNaming.maxBytes`): the column may hold the cut name.
            let full = SchemaTracker.columnName(forPath: path)
            let name = columns[full] != nil ? full : SchemaTracker.columnName(forPath: path, maxBytes: ColumnNaming.maxBytes(.postgres))
            fieldsSeen.insert(name)
            // The row was found by the key's text: its key matches.
            if path == "_id" { return }
            // (A field only ever null has no column: nothing to compare.)
            guard let c = columns[name] else {
                if !view.isNull { differs = true; note("\(idText): no column for field \(path)") }
                return
            }
            let value = view.decoded
            if !matches(value, row[c], types[c]) {
                differs = true
                note("\(idText).\(path): mongo \(ExtendedJSON.relaxed(value)) table \(row[c] ?? "NULL")")
            }
        }
        for (name, c) in columns where !fieldsSeen.contains(name) && row[c] != nil && !name.hasPrefix("_mongoshift") {
            differs = true
            note("\(idText).\(name): not in the document but \(row[c]!) in the table")
        }
        return !differs
    }

    /// The `_id` values whose text (as the table holds it) is `text`: an ObjectId, a number, a document, a string,
    /// a date, a timestamp, a binary.
    public static func keyCandidates(_ text: String) -> [BSON] {
        var out: [BSON] = [.string(text)]
        if let oid = ObjectId(hex: text) { out.append(.objectId(oid)) }
        if let n = Int64(text) { out.append(.int64(n)); if let small = Int32(exactly: n) { out.append(.int32(small)) } }
        if let d = Double(text), text.contains(".") || text.contains("e") { out.append(.double(d)) }
        if let decimal = Decimal128(text) { out.append(.decimal128(decimal)) }
        if text.hasPrefix("{") || text.hasPrefix("["), let parsed = try? JSONToBSON.parse(text) { out.append(parsed) }
        if text == "true" || text == "false" { out.append(.bool(text == "true")) }
        // PostgreSQL prints a boolean as t/f.
        if text == "t" || text == "f" { out.append(.bool(text == "t")) }
        if let ms = TextValueDecoder.parseTimestampText(text) { out.append(.datetime(ms)) }
        if let packed = UInt64(text) {
            out.append(.timestamp(BSONTimestamp(seconds: UInt32(packed >> 32), increment: UInt32(truncatingIfNeeded: packed))))
        }
        // A binary key column prints hex: `\x…` (bytea) or bare (Redshift's VARBYTE).
        let hex = text.hasPrefix("\\x") ? String(text.dropFirst(2)) : text
        if hex.count % 2 == 0, !hex.isEmpty, hex.allSatisfy(\.isHexDigit) {
            let bytes = stride(from: 0, to: hex.count, by: 2).compactMap { i -> UInt8? in
                let start = hex.index(hex.startIndex, offsetBy: i)
                return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
            }
            for subtype: UInt8 in [0, 3, 4] { out.append(.binary(BSONBinary(subtype: subtype, data: bytes))) }
        }
        if text.count % 4 == 0, let data = Data(base64Encoded: text), !data.isEmpty {
            // The table holds a binary `_id` as base64, whatever its subtype: the common ones.
            for subtype: UInt8 in [0, 3, 4] { out.append(.binary(BSONBinary(subtype: subtype, data: [UInt8](data)))) }
        }
        return out
    }

    static func matches(_ value: BSON, _ text: String?, _ type: UInt32) -> Bool {
        if value.isNull { return text == nil }
        guard let text else { return false }
        switch type {
        case PostgresType.int2, PostgresType.int4, PostgresType.int8:
            return Int64(text) == value.intValue.map(Int64.init)
        case PostgresType.float8, PostgresType.float4:
            switch value {
            case .double(let d): return TextValueDecoder.parseFloat(text, type: type) == d || (d.isNaN && text == "NaN")
            case .int32, .int64: return TextValueDecoder.parseFloat(text, type: type) == Double(value.intValue!)
            default: return false
            }
        case PostgresType.numeric:
            return normalizedDecimal(text) == normalizedDecimal(ValueText.scalarText(value))
        case PostgresType.bool:
            return value == .bool(text == "t")
        case PostgresType.timestamp:
            guard case .datetime(let ms) = value else { return false }
            return TextValueDecoder.parseTimestampText(text) == ms
        case PostgresType.jsonb, PostgresType.json, PostgresType.redshiftSuper:
            guard let a = try? JSONToBSON.parse(text), let b = try? JSONToBSON.parse(ValueText.plainJSON(value)) else { return false }
            return canonical(a) == canonical(b)
        case PostgresType.bytea, PostgresType.redshiftVarbyte:
            // bytea prints `\x` + hex; Redshift's VARBYTE the bare hex.
            guard case .binary(let b) = value else { return false }
            let hex = b.data.map { String(format2: $0) }.joined()
            return text == "\\x" + hex || text == hex
        default:
            return text == ValueText.scalarText(value)
        }
    }

    /// One form for a typed key's text, whether printed by the server or bound by us: dates as milliseconds,
    /// numbers by value, booleans as true/false, binaries as bare lower-case hex.
    static func normalizedKey(_ text: String, _ type: UInt32) -> String {
        switch type {
        case PostgresType.timestamp: return TextValueDecoder.parseTimestampText(text).map { String($0) } ?? text
        case PostgresType.numeric: return normalizedDecimal(text)
        case PostgresType.float8, PostgresType.float4: return TextValueDecoder.parseFloat(text, type: type).map { "\($0)" } ?? text
        case PostgresType.bool: return text == "t" || text == "true" ? "true" : text == "f" || text == "false" ? "false" : text
        case PostgresType.bytea, PostgresType.redshiftVarbyte: return (text.hasPrefix("\\x") ? String(text.dropFirst(2)) : text).lowercased()
        default: return text
        }
    }

    static func normalizedDecimal(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = s
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t
    }

    /// Order-insensitive form (jsonb reorders object keys).
    static func canonical(_ v: BSON) -> String {
        switch v {
        case .document(let d): return "{" + d.map { ($0, canonical($1)) }.sorted { $0.0 < $1.0 }.map { "\($0.0):\($0.1)" }.joined(separator: ",") + "}"
        case .array(let items): return "[" + items.map(canonical).joined(separator: ",") + "]"
        case .int32, .int64: return "n\(v.intValue!)"
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? "n\(Int64(d))" : "d\(d)"
        default: return ExtendedJSON.relaxed(v)
        }
    }
}
