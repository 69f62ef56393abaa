import BSON
import Foundation
import PostgresClient
import Spool

/// Reads one keyset page or watermark poll into a spool segment writer, row by row (single-row mode), on the
/// source connection's thread. Holds one page (compressed as it grows; a snapshot copier holds a second while the
/// first is sealed): memory is bounded by the page size, never by the table.
///
/// `@unchecked Sendable`: mutated only on the connection's thread inside one `stream` call, read after it returns.
final class PageSink: @unchecked Sendable {
    /// The state lives in one struct, so a row costs one access to the class's storage, not one per field (each
    /// with its exclusivity check and reference counting) on the extract's hot path.
    private var state: PageSinkState

    init(encoder: RowEncoder, writer: SpoolSegmentWriter, readByPage: RecordRun? = nil) {
        state = PageSinkState(encoder: encoder, writer: writer, readByPage: readByPage)
    }

    func consume<Row: SourceRow & ~Copyable>(_ row: borrowing Row, detectDuplicates: Bool) {
        state.consume(row, detectDuplicates: detectDuplicates)
    }

    var writer: SpoolSegmentWriter {
        get { state.writer }
        set { state.writer = newValue }
    }
    var deadLetters: [DeadLetterFile.Entry] {
        get { state.deadLetters }
        set { state.deadLetters = newValue }
    }
    /// The segment's size so far (checked per UNLOAD line: read without copying the writer out).
    var writerByteCount: Int { state.writer.byteCount }
    var rows: Int { state.rows }
    var lastRow: RowTextMemo { state.lastRow }
    var nullKeys: Int { state.nullKeys }
    var duplicateKeys: Int { state.duplicateKeys }
    var lastKeyRun: RecordRun { state.lastKeyRun }
}

struct PageSinkState {
    let encoder: RowEncoder
    var writer: SpoolSegmentWriter
    var rows = 0
    var lastRow = RowTextMemo()
    var deadLetters: [DeadLetterFile.Entry] = []
    var nullKeys = 0
    var duplicateKeys = 0
    /// Where each record is written before it joins the segment (reused: no allocation per row).
    private var scratch = [UInt8](repeating: 0, count: 64 << 10)
    /// The newest in-place record, kept in its own buffer (swapped with `scratch`, not copied, row after row).
    private var previous = [UInt8](repeating: 0, count: 64 << 10)
    private var previousLength: Int?
    /// The records before it that share its key (copied only when a key repeats).
    private var earlierOfLastKey = RecordRun()
    /// Repeat check: every row has one key; those whose record is here were read by the page, the rest are repeats
    /// it did not see. Nothing is written.
    private var readByPage: RecordRun?

    init(encoder: RowEncoder, writer: SpoolSegmentWriter, readByPage: RecordRun? = nil) {
        self.encoder = encoder
        self.writer = writer
        self.readByPage = readByPage
    }

    /// The records of the rows at the end of the page that share its last key: what a full page's repeat check
    /// (`PageReader.unseenRepeats`) knows was read.
    var lastKeyRun: RecordRun {
        var run = earlierOfLastKey
        if let n = previousLength { previous.withUnsafeBytes { run.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
        return run
    }

    mutating func consume<Row: SourceRow & ~Copyable>(_ row: borrowing Row, detectDuplicates: Bool) {
        rows += 1
        let outcome = encoder.encodeRecord(row, into: &scratch)
        if case .nullKey = outcome {
            nullKeys += 1
            return
        }
        // Redshift does not enforce keys: report duplicates, never merge them silently. Rows come in key order, so
        // a duplicate follows the row it repeats.
        var duplicate = detectDuplicates && lastRow.hasKey(of: row, encoder.table)
        var kept: Int?
        if readByPage != nil {
            // (A row the page could not encode was reported by it already.)
            guard case .record(let n) = outcome else { return }
            if scratch.withUnsafeBytes({ readByPage!.remove(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) { return }
            duplicate = true
        } else if case .record(let n) = outcome {
            if !duplicate {
                earlierOfLastKey.removeAll()
            } else if let m = previousLength {
                previous.withUnsafeBytes { earlierOfLastKey.append(UnsafeRawBufferPointer(rebasing: $0[0..<m])) }
            }
            kept = n
        }
        // Once the record has joined the segment (or been reported), its buffer becomes `previous`.
        defer {
            if let kept {
                swap(&scratch, &previous)
                previousLength = kept
            }
        }
        lastRow.remember(row, encoder.table)
        if case .record(let n) = outcome, !duplicate {
            scratch.withUnsafeBytes { writer.append(recordBytes: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            return
        }
        // Rare: a duplicate, or a row the in-place path could not write — the general encoder says why.
        switch encoder.encode(row) {
        case .change(let change, _, _):
            if duplicate {
                duplicateKeys += 1
                deadLetters.append(.init(key: change.key, reason: "duplicate key in source (kept the first row)", payload: change.document))
            } else {
                writer.append(record: change.record)
            }
        case .deadLetter(let entry, _, _):
            deadLetters.append(entry)
        case .nullKey:
            nullKeys += 1
        }
    }
}

/// The key and watermark text of the last row read, kept as bytes (no String per row): the page's resume point
/// and the duplicate check of the next row.
struct RowTextMemo {
    private var keyBytes: [UInt8] = []
    private var keyEnds: [Int] = []
    private var watermark: [UInt8]?

    func hasKey<Row: SourceRow & ~Copyable>(of row: borrowing Row, _ table: SourceTable) -> Bool {
        guard keyEnds.count == table.keyIndexes.count else { return false }
        var start = 0
        for (n, i) in table.keyIndexes.enumerated() {
            let text = row.bytes(i)
            let end = keyEnds[n]
            guard end - start == text.count else { return false }
            let same = keyBytes.withUnsafeBufferPointer { stored in
                text.count == 0 || memcmp(stored.baseAddress! + start, text.baseAddress!, text.count) == 0
            }
            guard same else { return false }
            start = end
        }
        return true
    }

    mutating func remember<Row: SourceRow & ~Copyable>(_ row: borrowing Row, _ table: SourceTable) {
        keyBytes.removeAll(keepingCapacity: true)
        keyEnds.removeAll(keepingCapacity: true)
        for i in table.keyIndexes {
            keyBytes.append(contentsOf: row.bytes(i))
            keyEnds.append(keyBytes.count)
        }
        if let w = table.watermarkIndex, let text = row.value(w) {
            if watermark == nil { watermark = [] }
            watermark!.removeAll(keepingCapacity: true)
            watermark!.append(contentsOf: text)
        } else {
            watermark = nil
        }
    }

    var keyText: [String]? {
        guard !keyEnds.isEmpty else { return nil }
        var out: [String] = []
        var start = 0
        for end in keyEnds {
            out.append(String(decoding: keyBytes[start..<end], as: UTF8.self))
            start = end
        }
        return out
    }

    var watermarkText: String? { watermark.map { String(decoding: $0, as: UTF8.self) } }
}

/// Encoded records kept side by side (a page's last key's rows).
struct RecordRun: Sendable {
    private var bytes: [UInt8] = []
    private var ends: [Int] = []

    var count: Int { ends.count }

    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
    }

    mutating func append(_ record: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: record)
        ends.append(bytes.count)
    }

    /// Removes one record equal to `record`; false when there is none.
    mutating func remove(_ record: UnsafeRawBufferPointer) -> Bool {
        var start = 0
        for (i, end) in ends.enumerated() {
            let same = end - start == record.count && bytes.withUnsafeBytes { memcmp($0.baseAddress! + start, record.baseAddress!, record.count) == 0 }
            if same {
                bytes.removeSubrange(start..<end)
                ends.remove(at: i)
                for j in i..<ends.count { ends[j] -= end - start }
                return true
            }
            start = end
        }
        return false
    }
}

struct PageResult {
    var rows: Int
    var lastKeyText: [String]?
    var lastWatermarkText: String?
    var writer: SpoolSegmentWriter
    var deadLetters: [DeadLetterFile.Entry]
    var nullKeys: Int
    var duplicateKeys: Int
    var lastKeyRun: RecordRun
}

enum PageReader {
    static func read(_ connection: PostgresConnection, sql: String, params: [String?], encoder: RowEncoder,
                     stream: String, reserveBytes: Int, detectDuplicates: Bool) async throws -> PageResult {
        let sink = PageSink(encoder: encoder, writer: SpoolSegmentWriter(stream: stream, reserveBytes: reserveBytes))
        try await connection.stream(sql, params) { row in sink.consume(row, detectDuplicates: detectDuplicates) }
        return PageResult(rows: sink.rows, lastKeyText: sink.lastRow.keyText, lastWatermarkText: sink.lastRow.watermarkText,
                          writer: sink.writer, deadLetters: sink.deadLetters, nullKeys: sink.nullKeys, duplicateKeys: sink.duplicateKeys,
                          lastKeyRun: sink.lastKeyRun)
    }

    /// The repeat check after a full page: every row with the key the page ended at (`KeysetQuery.keyRows`), those
    /// the page did not read reported as duplicates — the next page (`key > last`) would skip them unseen.
    static func unseenRepeats(_ connection: PostgresConnection, sql: String, params: [String?], encoder: RowEncoder, stream: String,
                              readByPage: RecordRun) async throws -> (rows: Int, deadLetters: [DeadLetterFile.Entry]) {
        let sink = PageSink(encoder: encoder, writer: SpoolSegmentWriter(stream: stream, reserveBytes: 0), readByPage: readByPage)
        try await connection.stream(sql, params) { row in sink.consume(row, detectDuplicates: true) }
        return (sink.rows, sink.deadLetters)
    }
}
