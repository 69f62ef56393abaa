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
    let encoder: RowEncoder
    var writer: SpoolSegmentWriter
    var rows = 0
    var lastRow = RowTextMemo()
    var deadLetters: [DeadLetterFile.Entry] = []
    var nullKeys = 0
    var duplicateKeys = 0
    /// Where each record is written before it joins the segment (reused: no allocation per row).
    private var scratch = [UInt8](repeating: 0, count: 64 << 10)
    /// The page starts at the key copied last (`KeysetQuery.snapshotPage(includingAfter:)`): its first rows with
    /// that key are the ones the previous page already copied or reported, not new duplicates.
    private var rowsToSkip: Int
    private(set) var skippedRows = 0
    /// Rows at the end of the page sharing its last key (what the next page skips).
    private(set) var lastKeyRows = 0

    init(encoder: RowEncoder, writer: SpoolSegmentWriter, resumingAt copied: (key: [String], rows: Int)? = nil) {
        self.encoder = encoder
        self.writer = writer
        rowsToSkip = copied?.rows ?? 0
        if let copied { lastRow.remember(keyText: copied.key) }
    }

    func consume<Row: SourceRow & ~Copyable>(_ row: borrowing Row, detectDuplicates: Bool) {
        rows += 1
        let outcome = encoder.encodeRecord(row, into: &scratch)
        if case .nullKey = outcome {
            nullKeys += 1
            return
        }
        // Redshift does not enforce keys: report duplicates, never merge them silently. Rows come in key order,
        // so a duplicate follows the row it repeats (across pages too: see `skipsCopiedRow`).
        let duplicate = detectDuplicates && lastRow.hasKey(of: row, encoder.table)
        lastKeyRows = duplicate ? lastKeyRows + 1 : 1
        if rowsToSkip > 0 && duplicate {
            rowsToSkip -= 1
            skippedRows += 1
            return
        }
        rowsToSkip = 0
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
        if let w = table.watermarkIndex, !row.isNull(w) {
            if watermark == nil { watermark = [] }
            watermark!.removeAll(keepingCapacity: true)
            watermark!.append(contentsOf: row.bytes(w))
        } else {
            watermark = nil
        }
    }

    /// The key of a row read earlier (the previous page's last), as text.
    mutating func remember(keyText: [String]) {
        keyBytes.removeAll(keepingCapacity: true)
        keyEnds.removeAll(keepingCapacity: true)
        for text in keyText {
            keyBytes.append(contentsOf: text.utf8)
            keyEnds.append(keyBytes.count)
        }
        watermark = nil
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

struct PageResult {
    var rows: Int
    var lastKeyText: [String]?
    var lastWatermarkText: String?
    var writer: SpoolSegmentWriter
    var deadLetters: [DeadLetterFile.Entry]
    var nullKeys: Int
    var duplicateKeys: Int
    /// Rows the previous page already read (`resumingAt`): counted in `rows`, not written or reported again.
    var skippedRows = 0
    /// Rows at the end of the page sharing its last key.
    var lastKeyRows = 0
}

enum PageReader {
    /// `resumingAt`: the page's query includes the key read last, and its first `rows` rows with that key are the
    /// ones already read.
    static func read(_ connection: PostgresConnection, sql: String, params: [String?], encoder: RowEncoder, stream: String, reserveBytes: Int,
                     detectDuplicates: Bool, resumingAt copied: (key: [String], rows: Int)? = nil) async throws -> PageResult {
        let sink = PageSink(encoder: encoder, writer: SpoolSegmentWriter(stream: stream, reserveBytes: reserveBytes), resumingAt: copied)
        try await connection.stream(sql, params) { row in sink.consume(row, detectDuplicates: detectDuplicates) }
        return PageResult(rows: sink.rows, lastKeyText: sink.lastRow.keyText, lastWatermarkText: sink.lastRow.watermarkText,
                          writer: sink.writer, deadLetters: sink.deadLetters, nullKeys: sink.nullKeys, duplicateKeys: sink.duplicateKeys,
                          skippedRows: sink.skippedRows, lastKeyRows: sink.lastKeyRows)
    }
}
