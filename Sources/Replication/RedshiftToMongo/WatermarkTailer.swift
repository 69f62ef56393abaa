import BSON
import Changes
import Foundation
import Logging
import PostgresClient
import ServiceLifecycle
import Spool
import StateStore

/// Polls a Redshift/PostgreSQL table by its composite watermark `(wm, key)` and spools what changed.
///
/// The tailer starts from the durable extract position and keeps the position it last recorded; its segments
/// are recorded under the generation it started from, so a rewind (spool recovery, takeover) stops it.
/// Each poll is one indexed query: rows after that position, never past `now() - safety_lag` on
/// the source's clock, in `(wm, key)` order, sized to `batch_bytes`. Ties on `wm` are broken by the key, so no
/// row is skipped when many share a timestamp. A full page polls again at once; a short page waits
/// `poll_interval`. With `lookback`, the window behind the watermark is re-read each cycle (late commits that
/// slipped past `safety_lag`); the version guard makes the overlap harmless. Rows whose watermark is NULL can
/// never be polled: they are counted and reported, never skipped silently.
struct WatermarkTailer {
    let reader: SourceReader
    let encoder: RowEncoder

    private var context: StreamContext { reader.context }
    private var table: SourceTable { reader.table }
    private var dialect: SQLDialect { reader.dialect }

    /// Runs until graceful shutdown. Throws only permanent errors (and `.rewound` when its start was rewound).
    func run() async throws {
        var cursor = try await context.state.extractCursor(context.name)
        var sizer = BatchSizer(context.stream)
        var lastNullCheck = ContinuousClock.now - .seconds(3600)
        var lastLookback = ContinuousClock.now
        var reportedNulls = 0
        var lastClockCheck = ContinuousClock.now - .seconds(3600)
        var clockBehind = false
        while !Task.isShuttingDownGracefully {
            try await context.waitForSpoolSpace()
            let (rows, limit) = try await pollOnce(cursor: &cursor, sizer: &sizer)
            let now = ContinuousClock.now
            if context.stream.lookback > .zero && now - lastLookback >= context.stream.pollInterval {
                lastLookback = now
                try await rescanLookback(cursor: cursor, sizer: sizer)
            }
            if rows == 0 && now - lastClockCheck >= .seconds(10) {
                lastClockCheck = now
                clockBehind = try await checkSourceClock(cursor.position?.watermark?.value, wasBehind: clockBehind)
            }
            if now - lastNullCheck >= .seconds(60) {
                lastNullCheck = now
                let nulls = try await countNullWatermarks()
                if nulls != reportedNulls {
                    reportedNulls = nulls
                    if nulls > 0 {
                        context.logger.error("rows with a NULL watermark cannot be tailed; set the column or they will not follow",
                                             metadata: ["rows": "\(nulls)", "column": "\(table.watermarkName ?? "")"])
                        try await context.state.recordError(context.name, "\(nulls) rows have a NULL \(table.watermarkName ?? "watermark") and are not tailed")
                    }
                }
            }
            if rows < limit {
                try await pause(context.stream.pollInterval)
            }
        }
    }

    /// One poll after the cursor's position; a page read moves the cursor. Returns rows read and the page limit.
    func pollOnce(cursor: inout ExtractCursor, sizer: inout BatchSizer) async throws -> (Int, Int) {
        let position = cursor.position?.watermark
        let limit = sizer.rows
        let started = ContinuousClock.now
        defer {
            context.logger.debug("polled", metadata: ["ms": "\(String(format: "%.1f", (ContinuousClock.now - started).seconds * 1000))"])
        }
        let (sql, params) = KeysetQuery.tailPoll(table: table, dialect: dialect, afterWatermark: position?.value, afterKey: position?.key,
                                                 safetyLagSeconds: Int(context.stream.safetyLag.seconds.rounded(.up)), limit: limit)
        let page = try await read(sql, params, reserve: sizer.reserveBytes)
        guard page.rows > 0, let lastWM = page.lastWatermarkText else { return (0, limit) }
        try await context.deadLetter(page.deadLetters)
        let last = StreamPosition.watermark(WatermarkPosition(value: lastWM, key: page.lastKeyText))
        try await context.spoolTail(page.writer, first: cursor.position, last: last, generation: cursor.generation)
        cursor.position = last
        sizer.observe(rows: page.rows, bytes: page.writer.byteCount)
        return (page.rows, limit)
    }

    /// Re-reads `(wm - lookback, wm]` behind the cursor into repair segments (positions unchanged), page by page.
    func rescanLookback(cursor: ExtractCursor, sizer: BatchSizer) async throws {
        guard let wm = cursor.position?.watermark?.value else { return }
        let seconds = Int(context.stream.lookback.seconds.rounded(.up))
        let w = SQL.identifier(table.watermarkName!)
        let keys = table.keyNames.map(SQL.identifier).joined(separator: ", ")
        let lower: String = switch dialect {
        case .redshift: "DATEADD(second, -\(seconds), $1::timestamp)"
        case .postgres: "($1::timestamp - INTERVAL '\(seconds) seconds')"
        }
        var after: [String]? = nil
        var afterWM: String? = nil
        while !Task.isShuttingDownGracefully {
            var params: [String?] = [wm]
            var condition = "\(w) > \(lower) AND \(w) <= $1"
            if let afterWM, let after {
                params.append(afterWM)
                let keyTerm = KeysetQuery.lexicographicAfter(columns: table.keyNames.map(SQL.identifier), values: after) { value in
                    params.append(value)
                    return "$\(params.count)"
                }
                condition += " AND (\(w) > $2 OR (\(w) = $2 AND \(keyTerm)))"
            }
            let limit = sizer.rows
            let sql = "SELECT \(table.selectList) FROM \(table.qualifiedName) WHERE \(condition) ORDER BY \(w), \(keys) LIMIT \(limit)"
            let page = try await read(sql, params, reserve: sizer.reserveBytes)
            if page.rows == 0 { return }
            try await context.deadLetter(page.deadLetters)
            try await context.spoolTail(page.writer, kind: .repair, first: cursor.position, last: cursor.position, generation: cursor.generation)
            if page.rows < limit { return }
            after = page.lastKeyText
            afterWM = page.lastWatermarkText
        }
    }

    /// A poll never reads past the source clock minus `safety_lag`, so a source clock behind the stored watermark
    /// means the clock went backwards (or a failover landed on a server whose clock is behind): rows written now
    /// carry older watermarks than rows already read and will not be tailed until the clock passes the
    /// watermark. That is reported loudly (log, state error shown by `lag`, error metric) rather than guessed at.
    /// Returns whether the clock is behind now.
    func checkSourceClock(_ watermark: String?, wasBehind: Bool) async throws -> Bool {
        guard let w = table.watermarkIndex, PostgresType.temporal.contains(table.columns[w].typeOID), let wm = watermark else { return false }
        let sql = "SELECT CASE WHEN $1::timestamp > \(KeysetQuery.sourceNow(dialect, table: table, minusSeconds: -1)) THEN 1 ELSE 0 END"
        let behind = try await reader.scalar(sql, [wm]) == "1"
        if behind && !wasBehind {
            let message = "source clock is behind the stream's watermark \(wm) (clock went backwards?): rows written until the clock passes it are not tailed; run `verify --repair` once it has"
            context.metrics.errors.increment()
            context.logger.error("source clock went backwards", metadata: ["watermark": "\(wm)", "error": "\(message)"])
            try await context.state.recordError(context.name, message)
        } else if !behind && wasBehind {
            context.logger.notice("source clock has passed the watermark again: tailing normally", metadata: ["watermark": "\(wm)"])
        }
        return behind
    }

    func countNullWatermarks() async throws -> Int {
        let sql = "SELECT count(*) FROM \(table.qualifiedName) WHERE \(SQL.identifier(table.watermarkName!)) IS NULL"
        return Int(try await reader.scalar(sql) ?? "0") ?? 0
    }

    private func read(_ sql: String, _ params: [String?], reserve: Int) async throws -> PageResult {
        try await reader.page(sql, params, encoder: encoder, reserve: reserve, detectDuplicates: false)
    }
}
