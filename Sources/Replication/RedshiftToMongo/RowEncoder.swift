import BSON
import Changes
import PostgresClient
import Spool

/// One source row in text form: a libpq result row (`PostgresRowView`) or a line of an UNLOAD file (`UnloadRow`).
public protocol SourceRow: ~Copyable {
    var columnCount: Int { get }
    func isNull(_ column: Int) -> Bool
    /// The value's text bytes, valid while the row is.
    func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8>
    func string(_ column: Int) -> String?
}

extension PostgresRowView: SourceRow {}

/// Turns one source row into a `Change`: `_id` from the key (composite → subdocument), every column as a field,
/// `_mongoshift.v` = the row's version (`RowVersion`, from its watermark) for the target's guard, soft deletes as
/// deletes.
public struct RowEncoder: Sendable {
    public let table: SourceTable

    public init(table: SourceTable) {
        self.table = table
    }

    public enum Outcome {
        case change(Change, keyText: [String], watermarkText: String?)
        /// The row cannot be delivered; `keyText` locates it.
        case deadLetter(DeadLetterFile.Entry, keyText: [String], watermarkText: String?)
        /// NULL watermark (tail) or NULL key: counted and reported, never silently skipped.
        case nullKey
    }

    public func encode<Row: SourceRow & ~Copyable>(_ row: borrowing Row) -> Outcome {
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
        var version = RowVersion.unversioned
        var doc = Document(reservingCapacity: 512)
        doc.append("_id", id)
        var deleted = false
        for (i, column) in table.columns.enumerated() {
            if row.isNull(i) {
                doc.append(table.fieldNames[i], .null)
                continue
            }
            let value: BSON
            do {
                value = try TextValueDecoder.decode(row.bytes(i), type: column.typeOID, column: column.name)
            } catch {
                return .deadLetter(.init(key: id, reason: error.description), keyText: keyText, watermarkText: watermarkText)
            }
            if i == table.watermarkIndex { version = RowVersion.of(row.bytes(i), type: column.typeOID) ?? RowVersion.unversioned }
            if i == table.deleteIndex { deleted = SoftDelete.isDeleted(value) }
            doc.append(table.fieldNames[i], value)
        }
        doc.append("_mongoshift", .document(["v": .int64(version)]))
        // A row that no longer matches `where:` leaves the target like a deleted one.
        if let f = table.inFilterIndex, f < row.columnCount, row.string(f) == "0" { deleted = true }
        let change = deleted
            ? Change(operation: .delete, key: id, version: .int64(version))
            : Change(operation: .upsert, key: id, document: doc, version: .int64(version))
        return .change(change, keyText: keyText, watermarkText: watermarkText)
    }

    func key<Row: SourceRow & ~Copyable>(_ row: borrowing Row) throws(ValueError) -> BSON {
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
