import BSON
import Changes
import PostgresClient
import Spool

/// One source row in text form: a libpq result row (`PostgresRowView`) or a line of an UNLOAD file (`UnloadLineDecoder`).
public protocol SourceRow: ~Copyable {
    var columnCount: Int { get }
    func isNull(_ column: Int) -> Bool
    /// The value's text bytes, valid while the row is.
    func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8>
    func string(_ column: Int) -> String?
    /// The value's text bytes, nil for NULL.
    func value(_ column: Int) -> UnsafeBufferPointer<UInt8>?
}

extension SourceRow where Self: ~Copyable {
    public func value(_ column: Int) -> UnsafeBufferPointer<UInt8>? { isNull(column) ? nil : bytes(column) }
}

extension PostgresRowView: SourceRow {}

/// Turns one source row into a `Change`: `_id` from the key (composite → subdocument), every column as a field,
/// `_mongoshift.v` = the row's version (`RowVersion`, from its watermark) for the target's guard, soft deletes as
/// deletes.
///
/// Two ways, one result: `encodeRecord` writes the spool record straight from the row's text (the extract hot
/// path, one pass); `encode` builds values and says why a row cannot be delivered. The record path hands any row
/// it cannot write to `encode`, so the reasons live in one place.
public struct RowEncoder: Sendable {
    public let table: SourceTable
    /// Per column: how its text becomes BSON, and its field name as a C string (all names in one array).
    private let kinds: [TextValueKind]
    private let fieldKeys: [UInt8]
    private let fieldKeyRanges: [Range<Int>]
    /// Composite keys: each key column's name as a C string (the `_id` subdocument's keys).
    private let keyColumnKeys: [[UInt8]]
    /// How the watermark column's text becomes the row's version (nil: no watermark, or one that gives none).
    private let versionKind: RowVersion.Kind?
    /// The watermark column when it is written as a BSON date: its value comes from the version parsed already.
    private let datedWatermarkIndex: Int?

    public init(table: SourceTable) {
        self.table = table
        kinds = table.columns.map { TextValueKind(typeOID: $0.typeOID) }
        var keys: [UInt8] = []
        var ranges: [Range<Int>] = []
        for name in table.fieldNames {
            let start = keys.count
            keys += BSONWriter.keyBytes(name)
            ranges.append(start..<keys.count)
        }
        fieldKeys = keys
        fieldKeyRanges = ranges
        keyColumnKeys = table.keyIndexes.map { BSONWriter.keyBytes(table.columns[$0].name) }
        let versionKind = table.watermarkIndex.flatMap { RowVersion.Kind(typeOID: table.columns[$0].typeOID) }
        self.versionKind = versionKind
        let kinds = self.kinds
        datedWatermarkIndex = table.watermarkIndex.flatMap { w in versionKind == .microseconds && kinds[w] == .datetime ? w : nil }
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
            if i == table.deleteIndex { deleted = SoftDelete.isDeleted(value, type: column.typeOID) }
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

    public enum RecordOutcome {
        /// The record is `scratch[0..<n]`.
        case record(Int)
        case nullKey
        /// Not writable in place (a value to refuse, or a rare form): `encode` decides.
        case general
    }

    /// Writes the row's spool record — the bytes `encode(row)`'s `change.record` would have — into `scratch`.
    public func encodeRecord<Row: SourceRow & ~Copyable>(_ row: borrowing Row, into scratch: inout [UInt8]) -> RecordOutcome {
        for i in table.keyIndexes where row.isNull(i) { return .nullKey }
        var deleted = false
        if let f = table.inFilterIndex, f < row.columnCount, !row.isNull(f) {
            let text = row.bytes(f)
            deleted = text.count == 1 && text[0] == UInt8(ascii: "0")
        }
        if let d = table.deleteIndex, !row.isNull(d) {
            guard let value = try? TextValueDecoder.decode(row.bytes(d), type: table.columns[d].typeOID, column: table.columns[d].name) else { return .general }
            deleted = deleted || SoftDelete.isDeleted(value, type: table.columns[d].typeOID)
        }
        var version = RowVersion.unversioned
        var versionParsed = false
        if let w = table.watermarkIndex, let kind = versionKind, let text = row.value(w), let v = kind.version(of: text) {
            version = v
            versionParsed = true
        }
        let written = fieldKeys.withUnsafeBytes { keys in
            BSONWriter.encode(into: &scratch) { w in
                let record = w.beginDocument()
                w.element(0x10, "o")
                w.littleEndian(deleted ? Change.Operation.delete.rawValue : Change.Operation.upsert.rawValue)
                let keyTypeAt = w.count
                w.element(0, "k")
                let keyStart = w.count
                guard let keyType = writeKey(row, &w) else { return false }
                w.patch(keyTypeAt, keyType)
                let keyLength = w.count - keyStart
                // The document is written for deleted rows too (its values must decode, as `encode` requires), then dropped.
                let documentAt = w.count
                w.element(0x03, "d")
                let document = w.beginDocument()
                w.byte(keyType)
                w.bytes(UnsafeRawBufferPointer(start: RowEncoder.idKey.utf8Start, count: 4))
                w.repeatBytes(from: keyStart, length: keyLength)
                for i in kinds.indices {
                    let key = UnsafeRawBufferPointer(rebasing: keys[fieldKeyRanges[i]])
                    guard let text = row.value(i) else {
                        w.element(0x0A, key: key)
                        continue
                    }
                    if i == datedWatermarkIndex && versionParsed {
                        // The same instant the date writer would parse again: milliseconds, floored.
                        w.element(0x09, key: key)
                        w.littleEndian(TextValueDecoder.milliseconds(fromMicroseconds: version))
                        continue
                    }
                    let typeAt = w.count
                    w.element(0, key: key)
                    guard let type = writeValue(text, i, &w) else { return false }
                    w.patch(typeAt, type)
                }
                w.element(0x03, "_mongoshift")
                let meta = w.beginDocument()
                w.element(0x12, "v")
                w.littleEndian(version)
                w.endDocument(meta)
                w.endDocument(document)
                if deleted { w.truncate(to: documentAt) }
                w.element(0x12, "v")
                w.littleEndian(version)
                w.endDocument(record)
                return true
            }
        }
        return written.map(RecordOutcome.record) ?? .general
    }

    /// `_id` with its terminator.
    private static let idKey: StaticString = "_id\0"

    /// One column's value in place, or through the general decoder for the forms it keeps (nil: refused).
    @inline(__always)
    private func writeValue(_ text: UnsafeBufferPointer<UInt8>, _ i: Int, _ w: inout BSONWriter) -> UInt8? {
        let mark = w.count
        if let type = TextValueWriter.write(text, kind: kinds[i], into: &w) { return type }
        w.truncate(to: mark)
        guard let value = try? TextValueDecoder.decode(text, type: table.columns[i].typeOID, column: table.columns[i].name) else { return nil }
        w.value(value)
        return value.typeCode
    }

    private func writeKey<Row: SourceRow & ~Copyable>(_ row: borrowing Row, _ w: inout BSONWriter) -> UInt8? {
        if table.keyIndexes.count == 1 { return writeValue(row.bytes(table.keyIndexes[0]), table.keyIndexes[0], &w) }
        let sub = w.beginDocument()
        for (n, i) in table.keyIndexes.enumerated() {
            let typeAt = w.count
            w.byte(0)
            keyColumnKeys[n].withUnsafeBytes { w.bytes($0) }
            guard let type = writeValue(row.bytes(i), i, &w) else { return nil }
            w.patch(typeAt, type)
        }
        w.endDocument(sub)
        return 0x03
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
