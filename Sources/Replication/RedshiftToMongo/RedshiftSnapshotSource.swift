import BSON
import Changes
import Logging
import PostgresClient
import Spool
import StateStore

/// A Redshift/PostgreSQL table as a snapshot source (docs/ARCHITECTURE.md, "Snapshot"): the source clock is the
/// snapshot's start and the tail's seed (minus `safety_lag`); the key space is cut on the first key column
/// (integer keys: min…max arithmetic; others: NTILE quantiles); each partition is read by keyset pages
/// (`key > last ORDER BY key LIMIT n`, single-row mode), one durable segment per page. NULL and duplicate keys
/// (Redshift enforces neither) are reported to the dead-letter file at planning, never silently merged.
struct RedshiftSnapshotSource: SnapshotSource {
    /// Copier 0's connection (also used for planning); the others open their own.
    let reader: SourceReader
    /// S3 staging (Redshift dialect with `redshift.s3`): partitions may be copied by UNLOAD.
    let stage: S3Stage?

    private var context: StreamContext { reader.context }
    private var table: SourceTable { reader.table }
    var copiers: Int { context.stream.parallelism }

    func estimatedRows() async throws -> Int {
        if table.filterCondition != nil, let planned = try await filteredRows() { return planned }
        if let estimate = try await catalogRowEstimate() { return estimate }
        if reader.dialect == .postgres, let planned = try await plannedRows() { return planned }
        return Int(try await reader.scalar("SELECT count(*) FROM \(table.qualifiedName)") ?? "0") ?? 0
    }

    /// PostgreSQL's planner estimate (`EXPLAIN`) for a view, which has no catalog statistics: only the progress
    /// total depends on it, not worth a count of every row. (A table never analyzed is counted: the planner's
    /// guess for it can be far off.)
    private func plannedRows() async throws -> Int? {
        let name = context.stream.table
        let oid = try? await reader.run { c in try await SourceCatalog.resolve(name, on: c, dialect: .postgres)?.oid }
        let kind = try? await reader.scalar("SELECT CAST(relkind AS text) FROM pg_class WHERE oid = CAST($1 AS oid)", [oid ?? nil])
        guard kind == "v", let plan = try? await reader.scalar("EXPLAIN (FORMAT JSON) SELECT 1 FROM \(table.qualifiedName)"),
              let range = plan.range(of: "\"Plan Rows\": ") else { return nil }
        return Int(plan[range.upperBound...].prefix { $0.isNumber })
    }

    /// With `where:`, the planner's estimate of the matching rows (the catalog counts the whole table): the first
    /// plan line's `rows=` on both PostgreSQL and Redshift. Nil when the source would not explain it.
    private func filteredRows() async throws -> Int? {
        guard let condition = table.filterCondition,
              let plan = try? await reader.scalar("EXPLAIN SELECT 1 FROM \(table.qualifiedName) WHERE \(condition)") else { return nil }
        return Self.plannedRows(fromPlanLine: plan)
    }

    /// `rows=N` of a text-format plan line (`Seq Scan on t  (cost=0.00..18.50 rows=850 width=4)`).
    static func plannedRows(fromPlanLine line: String) -> Int? {
        guard let range = line.range(of: " rows=") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    /// The catalog's row count (Redshift: `svv_table_info.tbl_rows`; PostgreSQL: `reltuples`) without scanning
    /// the table; nil when the catalog does not say (no statistics, or the view needs a grant this login lacks).
    func catalogRowEstimate() async throws -> Int? {
        let table = context.stream.table, dialect = reader.dialect
        guard let found = (try? await reader.run({ c in try await SourceCatalog.resolve(table, on: c, dialect: dialect) })) ?? nil else { return nil }
        let sql = dialect == .redshift
            ? "SELECT CAST(tbl_rows AS bigint) FROM svv_table_info WHERE \"schema\" = $1 AND \"table\" = $2"
            : "SELECT CAST(reltuples AS bigint) FROM pg_class WHERE oid = CAST($1 AS oid)"
        let params: [String?] = dialect == .redshift ? [found.schema, found.name] : [found.oid]
        guard let text = try? await reader.scalar(sql, params), let n = Int(text), n >= 0 else { return nil }
        return n
    }

    /// `extract:` for a partition not started yet: UNLOAD needs S3 and integer (or no) bounds; `auto` unloads
    /// tables the catalog counts at `unload_min_rows` or more.
    func unloads(_ partition: PartitionState) async throws -> Bool {
        switch partition.lastKey {
        case .unloadFile?: return stage != nil
        case .columns?: return false
        default: break
        }
        guard stage != nil else { return false }
        let bounds = [partition.lower?.columns?.first, partition.upper?.columns?.first].compactMap { $0 }
        guard bounds.allSatisfy({ Int64($0) != nil }) else { return false }
        return try await chooseUnload()
    }

    private func chooseUnload() async throws -> Bool {
        switch context.stream.extract {
        case .unload: return true
        case .select: return false
        case .auto: return (try await catalogRowEstimate() ?? 0) >= context.stream.unloadMinRows
        }
    }

    /// Deletes the stream's UNLOAD files (every generation): after the snapshot completed.
    func removeUnloadedFiles(_ stage: S3Stage) async throws {
        let removed = try await stage.client.deletePrefix(stage.bucket, prefix: stage.prefix("unload"))
        if removed > 0 { context.logger.info("removed UNLOAD files of the completed snapshot", metadata: ["objects": "\(removed)"]) }
    }

    // MARK: planning

    /// Where a tail starting now begins: the bound a poll would use right now (nil: no watermark). Also what
    /// `reset --to now` sets. `scalar` runs a one-value query on the source.
    static func tailSeed(_ horizon: TransactionHorizon, table: SourceTable, dialect: SQLDialect, safetyLag: Duration, logger: Logger,
                         scalar: (String) async throws -> String?) async throws -> String? {
        switch table.watermarkKind {
        case nil:
            return nil
        case .time(let tz)?:
            let decision = PollBound(kind: .time(withTimeZone: tz), safetyLag: safetyLag, stampUnit: table.stampUnit(dialect)).decide(horizon, position: nil)
            if let writer = decision.heldBy { logger.notice("an open transaction writing the table holds the tail's start", metadata: ["transaction": "\(writer)"]) }
            return decision.value.map(WatermarkKind.time(withTimeZone: tz).boundText)
        case .integer?:
            if horizon.oldestWriter == nil { return horizon.maxWatermark.map(String.init) ?? "0" }
            let w = SQL.identifier(table.watermarkName!)
            let lowest = try await scalar("SELECT CAST(min(\(w)) AS varchar) FROM \(table.qualifiedName)").flatMap { Int64($0) }
            return lowest.map { String($0 == .min ? $0 : $0 - 1) } ?? "0"
        }
    }

    /// The snapshot's start is the source clock; the tail's seed is the bound a poll would use right now
    /// (`PollBound`: `now - safety_lag`, or before an open transaction writing the table), so no commit that lands
    /// after the copy read its range is missed. Integer watermarks start at the largest value visible — or, with a
    /// writer open, at the smallest (its values may lie anywhere below; the tail re-reads, idempotently).
    func plan() async throws -> SnapshotPlan {
        let keys = table.keyNames.map(SQL.identifier)
        let horizon = try await TransactionHorizon.probe(reader, kind: table.watermarkKind ?? .time(withTimeZone: false))
        let start = ValueText.timestampMicrosText(horizon.now)
        let seed = try await Self.tailSeed(horizon, table: table, dialect: reader.dialect, safetyLag: context.stream.safetyLag, logger: context.logger) {
            try await reader.scalar($0)
        }
        // An integer seed is the largest value visible now; a value taken earlier (a sequence) whose row is not
        // written yet shows no writer. The tail trusts values only once `safety_lag` old: the copy starts once the
        // seed is too, so rows below it are committed before their range is read.
        if case .integer? = table.watermarkKind, horizon.oldestWriter == nil, context.stream.safetyLag > .zero {
            context.logger.info("waiting safety_lag before copying: integer watermark values below the tail's start may still commit",
                                metadata: ["safety_lag_s": "\(context.stream.safetyLag.seconds)", "tail_from": "\(seed ?? "-")"])
            try await pause(context.stream.safetyLag)
            if Task.isShuttingDownGracefully { throw CancellationError() }
        }
        try await reportUncopyableKeys(keys)
        // UNLOAD bounds partitions by number only (it takes no parameters): other keys unload as one partition,
        // still split in files per slice.
        var unloadWhole = false
        if stage != nil && !table.hasIntegerKey { unloadWhole = try await chooseUnload() }
        let bounds: [(String?, String?)] = unloadWhole ? [(nil, nil)] : try await partitionBounds()
        return SnapshotPlan(start: .watermark(WatermarkPosition(value: start)),
                            tailSeed: seed.map { .watermark(WatermarkPosition(value: $0)) },
                            bounds: bounds.map { (lower: $0.0.map { .columns([$0]) }, upper: $0.1.map { .columns([$0]) }) },
                            summary: ["snapshot_start": "\(start)", "tail_from": "\(seed ?? "-")"])
    }

    /// Whether PostgreSQL itself guarantees the key: a valid unique index (no expression, no predicate) over key
    /// columns, with every key column NOT NULL, on a table without inheritance children (their rows are read too
    /// but not covered; a partitioned table's unique index is valid only once every partition has it). Then the two full scans below have nothing to find. Never on Redshift, whose
    /// PRIMARY KEY and UNIQUE are informational only (docs/ARCHITECTURE.md, "Redshift").
    private func keyEnforcedBySource() async throws -> Bool {
        guard reader.dialect == .postgres else { return false }
        let sql = """
            SELECT CAST(count(*) AS varchar) FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = CAST($1 AS oid) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
              AND i.indisvalid AND i.indisready AND i.indislive AND (NOT c.relhassubclass OR c.relkind = 'p')
              AND (SELECT bool_and(a.attname = ANY (CAST($2 AS text[]))) FROM unnest(i.indkey) k
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k)
              AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = ANY (CAST($2 AS text[]))
                              AND NOT a.attnotnull)
            """
        let names = "{" + table.keyNames.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
        let table = context.stream.table
        guard let oid = try await reader.run({ c in try await SourceCatalog.resolve(table, on: c, dialect: .postgres)?.oid }) else { return false }
        let count = try await reader.scalar(sql, [oid, names])
        return (Int(count ?? "0") ?? 0) > 0
    }

    /// What a keyset copy cannot carry: NULL keys, and duplicate keys in partitions UNLOAD may copy (its files come
    /// in no order). Keyset pages report duplicates as they read them (`PageSink`, and a full page's repeat check),
    /// so without UNLOAD no scan of the whole table is needed for them.
    private func reportUncopyableKeys(_ keys: [String]) async throws {
        if try await keyEnforcedBySource() { return }
        let scanDuplicates = stage == nil ? false : try await chooseUnload()
        let (nullKeys, duplicates): (Int, [[String?]]) = try await reader.run { [table] c in
            let nulls = try await c.query("SELECT count(*) FROM \(table.qualifiedName) WHERE \(keys.map { "\($0) IS NULL" }.joined(separator: " OR "))")
            guard scanDuplicates else { return (Int(nulls.rows.first?.first??.description ?? "0") ?? 0, []) }
            let dups = try await c.query("""
                SELECT \(keys.map { "\($0)::text" }.joined(separator: ", ")), count(*) FROM \(table.qualifiedName)
                WHERE \(keys.map { "\($0) IS NOT NULL" }.joined(separator: " AND "))
                GROUP BY \(keys.joined(separator: ", ")) HAVING count(*) > 1 LIMIT 100
                """)
            return (Int(nulls.rows.first?.first??.description ?? "0") ?? 0, dups.rows)
        }
        if nullKeys > 0 {
            context.logger.error("rows with a NULL key cannot be replicated", metadata: ["rows": "\(nullKeys)", "key": "\(table.keyNames)"])
            try await context.deadLetter([.init(key: .null, reason: "\(nullKeys) source rows have a NULL key (\(table.keyNames.joined(separator: ", "))) and are not copied")])
        }
        if !duplicates.isEmpty {
            context.logger.error("duplicate keys in the source: only the first row per key is copied", metadata: ["keys": "\(duplicates.count)"])
            try await context.deadLetter(duplicates.map { row in
                let keyText = row.dropLast().map { $0 ?? "" }
                return .init(key: keyText.count == 1 ? .string(keyText[0]) : .array(keyText.map(BSON.string)),
                             reason: "duplicate key in source: \(row.last.flatMap { $0 } ?? "?") rows share it")
            })
        }
    }

    /// (exclusive lower, inclusive upper) text bounds on the first key column; nil = unbounded.
    private func partitionBounds() async throws -> [(String?, String?)] {
        let n = max(1, context.stream.partitions)
        let k = SQL.identifier(table.keyNames[0])
        if n == 1 { return [(nil, nil)] }
        if table.hasIntegerKey {
            let row = try await reader.run { [table] c in
                try await c.query("SELECT min(\(k))::text, max(\(k))::text FROM \(table.qualifiedName)").rows.first
            }
            guard let lo = row?[0].flatMap({ Int64($0) }), let hi = row?[1].flatMap({ Int64($0) }), hi > lo else { return [(nil, nil)] }
            // 128-bit cuts: keys anywhere in Int64.min…Int64.max split without overflow.
            let cuts = KeySpace.cuts(from: Int128(lo), to: Int128(hi), parts: n).map { String(Int64($0)) }
            var out: [(String?, String?)] = []
            var lower: String? = nil
            for cut in cuts {
                out.append((lower, cut))
                lower = cut
            }
            out.append((lower, nil))
            return out
        }
        let boundaries = try await reader.run { [table] c in
            try await c.query("""
                SELECT max(\(k))::text FROM (SELECT \(k), NTILE(\(n)) OVER (ORDER BY \(k)) AS bucket
                FROM \(table.qualifiedName) WHERE \(k) IS NOT NULL) s GROUP BY bucket ORDER BY max(\(k))
                """).rows.compactMap { $0[0] }
        }
        var out: [(String?, String?)] = []
        var lower: String?
        for (i, b) in boundaries.enumerated() {
            let isLast = i == boundaries.count - 1
            out.append((lower, isLast ? nil : b))
            lower = b
        }
        return out.isEmpty ? [(nil, nil)] : out
    }

    // MARK: copying

    func copy(_ partition: PartitionState, copier: Int, into pages: SnapshotPages) async throws {
        let copy = copier == 0 ? reader : reader.onNewConnection()
        if let stage, try await unloads(partition) {
            try await UnloadSnapshotCopier(reader: copy, stage: stage)
                .copy(partition, lower: partition.lower?.columns?.first, upper: partition.upper?.columns?.first, into: pages)
            return
        }
        var after = partition.lastKey?.columns
        let lower = partition.lower?.columns?.first
        let upper = partition.upper?.columns?.first
        let encoder = RowEncoder(table: table)
        var sizer = BatchSizer(context.stream)
        func read(after: [String]?) async throws -> (page: PageResult, full: Bool)? {
            try Task.checkCancellation()
            if Task.isShuttingDownGracefully { return nil }
            try await pages.waitForSpace()
            let (limit, reserve) = (sizer.rows, sizer.reserveBytes)
            let (sql, params) = KeysetQuery.snapshotPage(table: table, after: after, lower: lower, upper: upper, limit: limit)
            let page = try await copy.page(sql, params, encoder: encoder, reserve: reserve, detectDuplicates: true)
            // (Reported duplicates take no room in the segment.)
            sizer.observe(rows: page.rows - page.duplicateKeys, bytes: page.writer.byteCount)
            return page.rows == 0 ? nil : (page, page.rows == limit)
        }
        var current = try await read(after: after)
        while let (page, full) = current {
            try await pages.deadLetter(page.deadLetters)
            let first: SnapshotKey? = after.map { .columns($0) } ?? lower.map { .columns([$0]) }
            // The next page is read while this one is sealed and recorded (pages are still recorded in order:
            // the next is spooled only after this one is).
            async let spooled: Void = pages.spool(page.writer, partition: partition.index, first: first, last: page.lastKeyText.map { .columns($0) })
            if full, let key = page.lastKeyText { try await pages.deadLetter(try await unseenRepeats(of: key, page: page, reader: copy, encoder: encoder)) }
            let next = full ? try await read(after: page.lastKeyText) : nil
            try await spooled
            after = page.lastKeyText
            current = next
        }
    }

    /// Repeats of the key a full page ended at that lie past the page (`key > last` skips them): reported like
    /// the ones inside a page. Up to `maxRepeatsReported` one by one, the rest by their count.
    private func unseenRepeats(of key: [String], page: PageResult, reader: SourceReader, encoder: RowEncoder) async throws -> [DeadLetterFile.Entry] {
        let limit = page.lastKeyRun.count + Self.maxRepeatsReported
        var (rows, entries) = try await reader.unseenRepeats(of: key, readByPage: page.lastKeyRun, encoder: encoder, limit: limit)
        // No more rows of the key than the page read: none lies past it. A row whose bytes differ from the page's
        // was updated in between (the tail brings the change) — the same row, not a repeat.
        if rows <= page.lastKeyRun.count { return [] }
        if rows == limit {
            let (sql, params) = KeysetQuery.keyRowCount(table: table, key: key)
            let total = Int(try await reader.scalar(sql, params) ?? "") ?? rows
            entries.append(.init(key: key.count == 1 ? .string(key[0]) : .array(key.map(BSON.string)),
                                 reason: "duplicate key in source: \(total) rows share it, \(entries.count) reported one by one"))
        }
        context.logger.debug("repeat check at a page boundary", metadata: ["repeats": "\(entries.count)"])
        return entries
    }

    /// Repeats of one key reported one by one at a page boundary (each entry holds its row).
    static let maxRepeatsReported = 10_000
}
