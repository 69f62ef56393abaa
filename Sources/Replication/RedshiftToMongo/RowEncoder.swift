import BSON
import Changes
import PostgresClient
import Spool

/// Turns one source row into a `Change`: `_id` from the key (composite → subdocument), every column as a field,
/// `_mongoshift.v` = the row's version (its watermark) for the target's guard, soft deletes as deletes.
public struct RowEncoder: Sendable {
    public let table: SourceTable
    /// Version for rows without a watermark column (the snapshot's start), as a BSON date.
    public let fallbackVersion: BSON

    public init(table: SourceTable, fallbackVersion: BSON) {
        self.table = table
        self.fallbackVersion = fallbackVersion
    }

    /// The encoder of a stream whose snapshot has begun: rows without a watermark get the snapshot's start.
    static func forStream(_ context: StreamContext, table: SourceTable) async throws -> RowEncoder {
        let start = try await context.state.stream(context.name)?.snapshotStart?.watermark?.value ?? ""
        return RowEncoder(table: table, fallbackVersion: TextValueDecoder.parseTimestampText(start).map(BSON.datetime) ?? .null)
    }

    public enum Outcome {
        case change(Change, keyText: [String], watermarkText: String?)
        /// The row cannot be delivered; `keyText` locates it.
        case deadLetter(DeadLetterFile.Entry, keyText: [String], watermarkText: String?)
        /// NULL watermark (tail) or NULL key: counted and reported, never silently skipped.
        case nullKey
    }

    public func encode(_ row: borrowing PostgresRowView) -> Outcome {
        var keyText: [String] = []
        keyText.reserveCapacity(table.keyIndexes.count)
        for i in table.keyIndexes {
            guard let text = row.string(i) else { return .nullKey }
            keyText.append(text)
        }
        let watermarkText = table.watermarkIndex.flatMap { row.string($0) }
        var id: BSON
        do {
            id = try key(row)
        } catch {
            let fallback: BSON = keyText.count == 1 ? .string(keyText[0]) : .array(keyText.map(BSON.string))
            return .deadLetter(.init(key: fallback, reason: error.description), keyText: keyText, watermarkText: watermarkText)
        }
        var version = fallbackVersion
        var doc = Document(reservingCapacity: 512)
        doc.append("_id", id)
        var deleted = false
        for (i, column) in table.columns.enumerated() {
            if row.isNull(i) {
                doc.append(column.name, .null)
                continue
            }
            let value: BSON
            do {
                value = try TextValueDecoder.decode(row.bytes(i), type: column.typeOID, column: column.name)
            } catch {
                return .deadLetter(.init(key: id, reason: error.description), keyText: keyText, watermarkText: watermarkText)
            }
            if i == table.watermarkIndex { version = value }
            if i == table.deleteIndex { deleted = SoftDelete.isDeleted(value) }
            doc.append(column.name, value)
        }
        doc.append("_mongoshift", .document(["v": version]))
        let change = deleted
            ? Change(operation: .delete, key: id, version: version)
            : Change(operation: .upsert, key: id, document: doc, version: version)
        return .change(change, keyText: keyText, watermarkText: watermarkText)
    }

    func key(_ row: borrowing PostgresRowView) throws(ValueError) -> BSON {
        if table.keyIndexes.count == 1 {
            let i = table.keyIndexes[0]
            return try TextValueDecoder.decode(row.bytes(i), type: table.columns[i].typeOID, column: table.columns[i].name)
        }
        var sub = Document()
        for i in table.keyIndexes {
            sub.append(table.columns[i].name, try TextValueDecoder.decode(row.bytes(i), type: table.columns[i].typeOID, column: table.columns[i].name))
        }
        return .document(sub)
    }
}
