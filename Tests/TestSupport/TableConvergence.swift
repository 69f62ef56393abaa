import Foundation
import MongoClient
import PostgresClient
import Replication

/// Compares a Mongo collection with its Redshift/PostgreSQL table, value by value (top-level fields → columns).
public enum TableConvergence {
    public static func differences(mongo: MongoClient, database: String, collection: String, pg: PostgresConnection,
                                   table: String, excluding: Set<String> = [], limit: Int = 10) async throws -> [String] {
        let rows = try await pg.query("SELECT * FROM \(table)")
        let columns = Dictionary(uniqueKeysWithValues: rows.columns.enumerated().map { ($1.name, $0) })
        var byId: [String: [String?]] = [:]
        for row in rows.rows { byId[row[columns["_id"]!] ?? ""] = row }
        let docs = try await mongo.findAll(database: database, collection: collection)
        var diffs: [String] = []
        var seen = Set<String>()
        for doc in docs where diffs.count < limit {
            let idText = ValueText.scalarText(doc["_id"] ?? .null)
            if excluding.contains(idText) { continue }
            seen.insert(idText)
            guard let row = byId[idText] else { diffs.append("missing in table: \(idText)"); continue }
            var fieldsSeen = Set<String>()
            for (field, value) in doc {
                let name = field == "_id" ? "_id" : ColumnNaming.sanitize(field)
                fieldsSeen.insert(name)
                guard let c = columns[name] else { diffs.append("\(idText): no column for field \(field)"); continue }
                if !matches(value, row[c], rows.columns[c].typeOID) {
                    diffs.append("\(idText).\(field): mongo \(ExtendedJSON.relaxed(value)) table \(row[c] ?? "NULL") (type \(rows.columns[c].typeOID))")
                }
            }
            for (name, c) in columns where !fieldsSeen.contains(name) && row[c] != nil {
                diffs.append("\(idText).\(name): missing in mongo but \(row[c]!) in table")
            }
        }
        let extra = byId.keys.filter { !seen.contains($0) && !excluding.contains($0) }
        if !extra.isEmpty { diffs.append("extra rows in table: \(extra.count), e.g. \(extra.prefix(3))") }
        return diffs
    }

    public static func wait(timeout: TimeInterval, mongo: MongoClient, database: String, collection: String, pg: PostgresConnection,
                            table: String, excluding: Set<String> = []) async throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var diffs: [String] = []
        repeat {
            diffs = (try? await differences(mongo: mongo, database: database, collection: collection, pg: pg, table: table, excluding: excluding))
                ?? ["table not readable yet"]
            if diffs.isEmpty { return [] }
            try await Task.sleep(for: .milliseconds(500))
        } while Date() < deadline
        return diffs
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
