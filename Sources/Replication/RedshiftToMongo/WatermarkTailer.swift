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
/// are recorded under the generation it started from, so a rewind (spool recovery, takeover) stops it. Each poll
/// first asks the source for its clock and the oldest open transaction writing the table (`TransactionHorizon`),
/// then reads rows after its position and at most `PollBound`'s bound — never past `now - safety_lag`, never past
/// where an open transaction may still commit rows — in `(wm, key)` order, sized to `batch_bytes`. Ties on `wm`
/// are broken by the key, so no row is skipped when many share a value. A full page polls again at once; a short
/// page waits `poll_interval`. With `lookback`, the window behind the position is re-read each poll interval
/// into repair segments, which only apply what changed (the rest is counted as rescanned). Rows whose watermark is
/// NULL can never be polled: they are counted and reported, never skipped silently.
struct WatermarkTailer {
    let reader: SourceReader
    let encoder: RowEncoder

    private var context: StreamContext { reader.context }
    private var table: SourceTable { reader.table }

    /// Runs until graceful shutdown. Throws only permanent errors (and `.rewound` when its start was rewound).
    func run() async throws {
        guard let kind = table.watermarkKind else { return }
        var cursor = try await context.state.extractCursor(context.name)
        var bound = PollBound(kind: kind, safetyLag: context.stream.safetyLag, stampUnit: table.stampUnit(reader.dialect))
        var sizer = BatchSizer(context.stream)
        var lastNullCheck = ContinuousClock.now - .seconds(3600)
        var lastLookback = ContinuousClock.now
        var reportedNulls = NullCounts(watermarks: 0, keys: 0)
        var clockBehind = false
        var holder: TransactionHorizon.OpenTransaction?
        while !Task.isShuttingDownGracefully {
            try await context.waitForSpoolSpace()
            let horizon = try await TransactionHorizon.probe(reader, kind: kind)
            let position = cursor.position?.watermark.flatMap { kind.value(of: $0.value) }
            bound.sample(time: horizon.now, maxVisible: horizon.maxWatermark,
                         oldestNeeded: min(horizon.now - Int64(context.stream.safetyLag.seconds * 1_000_000), horizon.oldestWriter?.start ?? .max))
            let decision = bound.decide(horizon, position: position)
            holder = reportHold(decision, previous: holder)
            let polled = ContinuousClock.now
            let (rows, limit) = try await pollOnce(kind: kind, upTo: decision.value, cursor: &cursor, sizer: &sizer)
            let now = ContinuousClock.now
            context.logger.debug("polled", metadata: ["rows": "\(rows)", "ms": "\(Int((now - polled).seconds * 1000))"])
            if context.stream.lookback != .off && now - lastLookback >= context.stream.pollInterval {
                lastLookback = now
                try await rescanLookback(kind: kind, cursor: cursor, sizer: sizer)
            }
            if case .time = kind, rows == 0 {
                clockBehind = try await checkSourceClock(now: horizon.now, position: position, watermark: cursor.position?.watermark?.value,
                                                         wasBehind: clockBehind)
            }
            if now - lastNullCheck >= .seconds(60) {
                lastNullCheck = now
                let nulls = try await countNulls()
                if nulls.watermarks != reportedNulls.watermarks, nulls.watermarks > 0 {
                    context.logger.error("rows with a NULL watermark cannot be tailed; set the column or they will not follow",
                                         metadata: ["rows": "\(nulls.watermarks)", "column": "\(table.watermarkName ?? "")"])
                    try await context.state.recordError(context.name, "\(nulls.watermarks) rows have a NULL \(table.watermarkName ?? "watermark") and are not tailed")
                }
                if nulls.keys != reportedNulls.keys, nulls.keys > 0 {
                    let key = table.keyNames.joined(separator: ", ")
                    context.logger.error("rows with a NULL key cannot be tailed; set the key or they will not follow",
                                         metadata: ["rows": "\(nulls.keys)", "key": "\(key)"])
                    try await context.deadLetter([.init(key: .null, reason: "\(nulls.keys) source rows have a NULL key (\(key)) and are not tailed")])
                    try await context.state.recordError(context.name, "\(nulls.keys) rows have a NULL key (\(key)) and are not tailed")
                }
                reportedNulls = nulls
            }
            if rows < limit {
                try await pause(context.stream.pollInterval)
            }
        }
    }

    /// Logs when an open transaction starts and stops holding the poll back, and keeps the hold metric current.
    private func reportHold(_ decision: PollBound.Decision, previous: TransactionHorizon.OpenTransaction?) -> TransactionHorizon.OpenTransaction? {
        context.metrics.watermarkHoldSeconds.record(decision.holdSeconds)
        if let writer = decision.heldBy, writer != previous {
            context.logger.notice("an open transaction writing the table holds the watermark back until it ends",
                                  metadata: ["transaction": "\(writer)", "hold_s": "\(Int(decision.holdSeconds))"])
        } else if decision.heldBy == nil, let previous {
            context.logger.notice("the open transaction ended: the watermark moves on", metadata: ["transaction": "\(previous)"])
        }
        return decision.heldBy
    }

    /// One poll after the cursor's position, up to `upperBound` (nil: not past the position yet); a page read
    /// moves the cursor. Returns rows read and the page limit.
    func pollOnce(kind: WatermarkKind, upTo upperBound: Int64?, cursor: inout ExtractCursor, sizer: inout BatchSizer) async throws -> (Int, Int) {
        let position = cursor.position?.watermark
        let limit = sizer.rows
        guard let upperBound = upperBound.map(kind.boundText) ?? position?.value else { return (0, limit) }
        let (sql, params) = KeysetQuery.tailPoll(table: table, castType: kind.castType, afterWatermark: position?.value,
                                                 afterKey: position?.key, upperBound: upperBound, limit: limit)
        let page = try await read(sql, params, reserve: sizer.reserveBytes)
        guard page.rows > 0, let lastWM = page.lastWatermarkText else { return (0, limit) }
        try await context.deadLetter(page.deadLetters)
        let last = StreamPosition.watermark(WatermarkPosition(value: lastWM, key: page.lastKeyText))
        try await context.spoolTail(page.writer, first: cursor.position, last: last, generation: cursor.generation)
        cursor.position = last
        sizer.observe(rows: page.rows, bytes: page.writer.byteCount)
        return (page.rows, limit)
    }

    /// Re-reads `(position - lookback, position]` into repair segments (positions unchanged), page by page.
    func rescanLookback(kind: WatermarkKind, cursor: ExtractCursor, sizer: BatchSizer) async throws {
        guard let upper = cursor.position?.watermark?.value, let value = kind.value(of: upper) else { return }
        let reach: Int64 = switch context.stream.lookback {
        case .off: 0
        case .duration(let d): Int64(d.seconds * 1_000_000)
        case .units(let n): n
        }
        let lower = kind.boundText(value.subtractingReportingOverflow(reach).overflow ? .min : value - reach)
        var after: (watermark: String, key: [String])?
        while !Task.isShuttingDownGracefully {
            let limit = sizer.rows
            let (sql, params) = KeysetQuery.lookbackPage(table: table, castType: kind.castType, lower: lower, upper: upper,
                                                         afterWatermark: after?.watermark, afterKey: after?.key, limit: limit)
            let page = try await read(sql, params, reserve: sizer.reserveBytes)
            if page.rows == 0 { return }
            try await context.deadLetter(page.deadLetters)
            try await context.spoolTail(page.writer, kind: .repair, first: cursor.position, last: cursor.position, generation: cursor.generation)
            if page.rows < limit { return }
            guard let wm = page.lastWatermarkText, let key = page.lastKeyText else { return }
            after = (wm, key)
        }
    }

    /// A poll never reads past the source clock minus `safety_lag`, so a source clock behind the stream's
    /// watermark means the clock went backwards (or a failover landed on a server whose clock is behind): rows
    /// written now carry older watermarks than rows already read and will not be tailed until the clock passes
    /// the watermark. That is reported loudly (log, state error shown by `lag`, error metric) rather than guessed
    /// at. Returns whether the clock is behind now.
    func checkSourceClock(now: Int64, position: Int64?, watermark: String?, wasBehind: Bool) async throws -> Bool {
        guard let position, let watermark else { return false }
        let behind = position > now + 1_000_000
        if behind && !wasBehind {
            let message = "source clock is behind the stream's watermark \(watermark) (clock went backwards?): rows written until the clock passes it are not tailed; run `verify --repair` once it has"
            context.metrics.errors.increment()
            context.logger.error("source clock went backwards", metadata: ["watermark": "\(watermark)", "error": "\(message)"])
            try await context.state.recordError(context.name, message)
        } else if !behind && wasBehind {
            context.logger.notice("source clock has passed the watermark again: tailing normally", metadata: ["watermark": "\(watermark)"])
        }
        return behind
    }

    struct NullCounts: Equatable {
        var watermarks: Int
        var keys: Int
    }

    /// Rows no poll can read (`KeysetQuery`): a NULL watermark or a NULL key column. One scan for both.
    func countNulls() async throws -> NullCounts {
        let wm = SQL.identifier(table.watermarkName!)
        let anyKeyNull = table.keyNames.map { "\(SQL.identifier($0)) IS NULL" }.joined(separator: " OR ")
        let sql = "SELECT CAST(count(CASE WHEN \(wm) IS NULL THEN 1 END) AS varchar), "
            + "CAST(count(CASE WHEN \(anyKeyNull) THEN 1 END) AS varchar) FROM \(table.qualifiedName)"
        let row = try await reader.run { c in try await c.query(sql).rows.first }
        return NullCounts(watermarks: Int(row?[0] ?? "0") ?? 0, keys: Int(row?[1] ?? "0") ?? 0)
    }

    private func read(_ sql: String, _ params: [String?], reserve: Int) async throws -> PageResult {
        try await reader.page(sql, params, encoder: encoder, reserve: reserve, detectDuplicates: false)
    }
}
