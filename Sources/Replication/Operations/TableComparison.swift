import BSON
import Foundation
import MongoClient
import PostgresClient

/// Compares a Mongo collection with its Redshift/PostgreSQL table value by value (top-level fields → columns,
/// as `flatten: 1` lays them out): the differing `_id`s by kind, with a readable reason for the first few.
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
                               table: String, excluding: Set<String> = [], reasonLimit: Int = 10) async throws -> Result {
        var result = Result()
        let rows = try await pg.query("SELECT * FROM \(table)")
        let columns = Dictionary(uniqueKeysWithValues: rows.columns.enumerated().map { ($1.name, $0) })
        guard let idColumn = columns["_id"] else { return result }
        var byId: [String: [String?]] = [:]
        for row in rows.rows { byId[row[idColumn] ?? ""] = row }
        var seen = Set<String>()
        func note(_ text: String) { if result.reasons.count < reasonLimit { result.reasons.append(text) } }
        for doc in try await mongo.findAll(database: database, collection: collection) {
            let id = doc["_id"] ?? .null
            let idText = ValueText.scalarText(id)
            if excluding.contains(idText) { continue }
            seen.insert(idText)
            result.checked += 1
            guard let row = byId[idText] else { result.missing.append(id); note("missing in table: \(idText)"); continue }
            var differs = false
            var fieldsSeen = Set<String>()
            for (field, value) in doc {
                let name = field == "_id" ? "_id" : ColumnNaming.sanitize(field)
                fieldsSeen.insert(name)
                guard let c = columns[name] else { differs = true; note("\(idText): no column for field \(field)"); continue }
                if !matches(value, row[c], rows.columns[c].typeOID) {
                    differs = true
                    note("\(idText).\(field): mongo \(ExtendedJSON.relaxed(value)) table \(row[c] ?? "NULL")")
                }
            }
            for (name, c) in columns where !fieldsSeen.contains(name) && row[c] != nil && !name.hasPrefix("_mongoshift") {
                differs = true
                note("\(idText).\(name): not in the document but \(row[c]!) in the table")
            }
            if differs { result.changed.append(id) }
        }
        result.extra = byId.keys.filter { !seen.contains($0) && !excluding.contains($0) }.sorted()
        if !result.extra.isEmpty { note("extra rows in table: \(result.extra.count), e.g. \(result.extra.prefix(3))") }
        return result
    }

    static func matches(_ value: BSON, _ text: String?, _ type: UInt32) -> Bool {
        if value.isNull { return text == nil }
        guard let text else { return false }
        switch type {
        case PostgresType.int2, PostgresType.int4, PostgresType.int8:
            return Int64(text) == value.intValue.map(Int64.init)
        case PostgresType.float8, PostgresType.float4:
            switch value {
            case .double(let d): return Double(text) == d || (d.isNaN && text == "NaN")
            case .int32, .int64: return Double(text) == Double(value.intValue!)
            default: return false
            }
        case PostgresType.numeric:
            return normalizedDecimal(text) == normalizedDecimal(ValueText.scalarText(value))
        case PostgresType.bool:
            return value == .bool(text == "t")
        case PostgresType.timestamp:
            guard case .datetime(let ms) = value else { return false }
            return TextValueDecoder.parseTimestampText(text) == ms
        case PostgresType.jsonb, PostgresType.json:
            guard let a = try? JSONToBSON.parse(text), let b = try? JSONToBSON.parse(ValueText.plainJSON(value)) else { return false }
            return canonical(a) == canonical(b)
        case PostgresType.bytea:
            guard case .binary(let b) = value else { return false }
            return text == "\\x" + b.data.map { String(format2: $0) }.joined()
        default:
            return text == ValueText.scalarText(value)
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
