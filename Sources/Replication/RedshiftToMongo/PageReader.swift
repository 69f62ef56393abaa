import BSON
import PostgresClient
import Spool

/// Reads one keyset page or watermark poll into a spool segment writer, row by row (single-row mode), on the
/// source connection's thread. Holds one page: memory is bounded by the page size, never by the table.
///
/// `@unchecked Sendable`: mutated only on the connection's thread inside one `stream` call, read after it returns.
final class PageSink: @unchecked Sendable {
    let encoder: RowEncoder
    var writer: SpoolSegmentWriter
    var rows = 0
    var lastKeyText: [String]?
    var lastWatermarkText: String?
    var deadLetters: [DeadLetterFile.Entry] = []
    var nullKeys = 0
    var duplicateKeys = 0

    init(encoder: RowEncoder, writer: SpoolSegmentWriter) {
        self.encoder = encoder
        self.writer = writer
    }

    func consume(_ row: borrowing PostgresRowView, detectDuplicates: Bool) {
        rows += 1
        switch encoder.encode(row) {
        case .change(let change, let keyText, let wm):
            if detectDuplicates, keyText == lastKeyText {
                // Redshift does not enforce keys: report duplicates, never merge them silently.
                duplicateKeys += 1
                deadLetters.append(.init(key: change.key, reason: "duplicate key in source (kept the first row)", payload: change.document))
            } else {
                writer.append(record: change.record)
            }
            lastKeyText = keyText
            lastWatermarkText = wm
        case .deadLetter(let entry, let keyText, let wm):
            deadLetters.append(entry)
            lastKeyText = keyText
            lastWatermarkText = wm
        case .nullKey:
            nullKeys += 1
        }
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
}

enum PageReader {
    static func read(_ connection: PostgresConnection, sql: String, params: [String?], encoder: RowEncoder,
                     stream: String, reserveBytes: Int, detectDuplicates: Bool) async throws -> PageResult {
        let sink = PageSink(encoder: encoder, writer: SpoolSegmentWriter(stream: stream, reserveBytes: reserveBytes))
        try await connection.stream(sql, params) { row in sink.consume(row, detectDuplicates: detectDuplicates) }
        return PageResult(rows: sink.rows, lastKeyText: sink.lastKeyText, lastWatermarkText: sink.lastWatermarkText,
                          writer: sink.writer, deadLetters: sink.deadLetters, nullKeys: sink.nullKeys, duplicateKeys: sink.duplicateKeys)
    }
}
