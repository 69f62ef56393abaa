import Foundation
import Logging
import MongoClient
import PostgresClient
import ServiceLifecycle
import Spool

/// The partitioned, resumable initial copy of a Redshift/PostgreSQL table into a Mongo collection (DESIGN §5).
///
/// 1. The source clock is captured first; the tail later starts from it (minus `safety_lag`), so changes made
///    while the snapshot runs are caught (overlap is harmless: applies are idempotent).
/// 2. The key space is split into partitions (integer keys: min…max; others: NTILE quantiles).
/// 3. `parallelism` workers read partitions by keyset pages, each page a durable spool segment; the partition's
///    last key is recorded with the segment, so a crash resumes at the page.
/// 4. The applier drains segments into Mongo while extraction runs.
public struct RedshiftSnapshot: Sendable {
    let context: StreamContext
    let source: PostgresSource
    let dialect: SQLDialect
    let applier: MongoApplier?
    let policy: RetryPolicy

    public init(context: StreamContext, redshift: RedshiftEndpoint, mongo: MongoClient?, database: String, policy: RetryPolicy) {
        self.context = context
        self.source = PostgresSource(url: redshift.url)
        self.dialect = redshift.dialect
        self.applier = mongo.map { MongoApplier(client: $0, database: database, collection: context.stream.collection) }
        self.policy = policy
    }

    public func run(spoolOnly: Bool) async throws -> SnapshotOutcome {
        let name = context.name
        var state = try await context.state.ensureStream(name, direction: StreamConfig.Direction.redshiftToMongo.rawValue)
        if state.phase == .streaming || state.phase == .failed && state.snapshotCompletedAt != nil {
            return .alreadyComplete(rowsApplied: state.rowsApplied)
        }
        try await context.recoverSpool()
        try await context.state.releaseClaims(name)
        // A helper (another worker owns the stream) only copies partitions of a snapshot the owner planned.
        if context.role == .helper && state.phase != .snapshotting { return .interrupted }
        let table = try await source.run(policy, logger: context.logger) { c in try await SourceTable.describe(c, stream: context.stream) }
        var partitions = try await context.state.partitions(name)
        if (state.phase == .new || partitions.isEmpty) && context.role == .owner {
            try await plan(table)
            state = try await context.state.stream(name)!
            partitions = try await context.state.partitions(name)
        } else {
            context.logger.info("resuming snapshot", metadata: [
                "partitions_done": "\(partitions.filter { $0.status == .done }.count)/\(partitions.count)",
                "rows_spooled": "\(partitions.reduce(0) { $0 + $1.rows })"])
        }
        let startText = Position.watermarkText(state.snapshotStart) ?? ""
        let fallbackVersion: BSON = TextValueDecoder.parseTimestampText(startText).map(BSON.datetime) ?? .null
        let encoder = RowEncoder(table: table, fallbackVersion: fallbackVersion)
        let total = try await source.run(policy, logger: context.logger) { c in
            Int(try await c.query("SELECT count(*) FROM \(table.qualifiedName)").rows.first?.first??.description ?? "0") ?? 0
        }
        let workers = max(1, min(context.stream.parallelism, partitions.count))
        let partitionCount = partitions.count
        let claimFor = context.config.leaseDuration * 4

        // Rounds: claim and copy partitions until none is left to claim, applying this worker's pages meanwhile;
        // the owner then waits for partitions other workers still copy (claims that expire come back to it).
        while true {
        let counters = SnapshotCounters(rowsDone: partitions.reduce(0) { $0 + $1.rows },
                                        partitionsDone: partitions.filter { $0.status == .done }.count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withThrowingTaskGroup(of: Void.self) { extractors in
                    for worker in 0..<workers {
                        let workerSource = worker == 0 ? source : PostgresSource(url: sourceURL)
                        extractors.addTask {
                            while !Task.isShuttingDownGracefully, let partition = try await context.state.claimPartition(name, duration: claimFor) {
                                try await extract(partition, table: table, encoder: encoder, source: workerSource,
                                                  counters: counters, total: total, partitionCount: partitionCount)
                            }
                        }
                    }
                    while try await extractors.next() != nil {}
                }
                await counters.finishExtraction()
            }
            if !spoolOnly, let applier {
                group.addTask {
                    try await SegmentApplyLoop(context: context, target: MongoTarget(applier: applier)).runDuringSnapshot(counters: counters, policy: policy)
                }
            }
            while try await group.next() != nil {}
        }
        if try await context.snapshotRoundsOver(spoolOnly: spoolOnly) { break }
        partitions = try await context.state.partitions(name)
        }
        context.progress?.finish(stream: name)
        if Task.isShuttingDownGracefully {
            context.logger.info("snapshot interrupted by shutdown; it resumes on the next run")
            return .interrupted
        }
        if spoolOnly {
            return .spooled(segments: try await context.state.spoolBacklog(name).segments)
        }
        if context.role == .helper { return .interrupted }
        try await context.state.completeSnapshot(name)
        let finalState = try await context.state.stream(name)!
        context.logger.info("snapshot complete", metadata: ["rows_applied": "\(finalState.rowsApplied)", "stale_skipped": "\(finalState.staleSkipped)",
                                                             "dead_lettered": "\(finalState.rowsDeadLettered)"])
        return .completed(rowsCopied: finalState.rowsApplied)
    }

    private var sourceURL: String { context.config.redshift?.url ?? "" }

    // MARK: planning

    private func plan(_ table: SourceTable) async throws {
        let stream = context.stream
        let keys = table.keyNames.map(SQL.identifier)
        let lagSeconds = Int(stream.safetyLag.seconds.rounded(.up))
        let (start, seed): (String, String?) = try await source.run(policy, logger: context.logger) { c in
            let clock = try await c.query(KeysetQuery.sourceClock(dialect)).rows.first?.first??.description ?? ""
            guard let wmIndex = table.watermarkIndex else { return (clock, nil) }
            if PostgresType.integers.contains(table.columns[wmIndex].typeOID) {
                let max = try await c.query("SELECT max(\(SQL.identifier(table.watermarkName!)))::text FROM \(table.qualifiedName)").rows.first?.first ?? nil
                return (clock, max ?? "0")
            }
            let seedSQL: String = switch dialect {
            case .redshift: "SELECT DATEADD(second, -\(lagSeconds), GETDATE())::text"
            case .postgres: "SELECT (now() AT TIME ZONE 'UTC' - INTERVAL '\(lagSeconds) seconds')::timestamp(6)::text"
            }
            return (clock, try await c.query(seedSQL).rows.first?.first ?? nil)
        }
        // Report what a keyset copy cannot carry: NULL keys and duplicate keys (Redshift enforces neither).
        let (nullKeys, duplicates): (Int, [[String?]]) = try await source.run(policy, logger: context.logger) { c in
            let nulls = try await c.query("SELECT count(*) FROM \(table.qualifiedName) WHERE \(keys.map { "\($0) IS NULL" }.joined(separator: " OR "))")
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
        let bounds = try await partitionBounds(table)
        var partitions: [PartitionState] = []
        for (i, (lower, upper)) in bounds.enumerated() {
            partitions.append(PartitionState(index: i, lower: lower.map { Position.key([$0]) }, upper: upper.map { Position.key([$0]) },
                                             lastKey: nil, status: .pending, rows: 0))
        }
        try await context.state.beginSnapshot(context.name, snapshotStart: Position.watermark(start, key: nil),
                                              tailSeed: seed.map { Position.watermark($0, key: nil) }, partitions: partitions)
        context.logger.info("snapshot planned", metadata: ["partitions": "\(partitions.count)", "snapshot_start": "\(start)",
                                                           "tail_from": "\(seed ?? "-")"])
    }

    /// (exclusive lower, inclusive upper) text bounds on the first key column; nil = unbounded.
    private func partitionBounds(_ table: SourceTable) async throws -> [(String?, String?)] {
        let n = max(1, context.stream.partitions)
        let k = SQL.identifier(table.keyNames[0])
        if n == 1 { return [(nil, nil)] }
        if table.hasIntegerKey {
            let row = try await source.run(policy, logger: context.logger) { c in
                try await c.query("SELECT min(\(k))::text, max(\(k))::text FROM \(table.qualifiedName)").rows.first
            }
            guard let lo = row?[0].flatMap({ Int64($0) }), let hi = row?[1].flatMap({ Int64($0) }), hi > lo else { return [(nil, nil)] }
            let span = hi.subtractingReportingOverflow(lo)
            guard !span.overflow else { return [(nil, nil)] }
            let step = max(1, (span.partialValue / Int64(n)) + 1)
            var out: [(String?, String?)] = []
            var upper = lo - 1
            for i in 0..<n {
                let lower: String? = i == 0 ? nil : String(upper)
                let next = upper.addingReportingOverflow(step)
                upper = next.overflow ? hi : min(hi, next.partialValue)
                let isLast = i == n - 1 || upper >= hi
                out.append((lower, isLast ? nil : String(upper)))
                if isLast { break }
            }
            return out
        }
        let boundaries = try await source.run(policy, logger: context.logger) { c in
            try await c.query("""
                SELECT max(\(k))::text FROM (SELECT \(k), NTILE(\(n)) OVER (ORDER BY \(k)) AS bucket
                FROM \(table.qualifiedName) WHERE \(k) IS NOT NULL) s GROUP BY bucket ORDER BY 1
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

    // MARK: extraction

    private func extract(_ partition: PartitionState, table: SourceTable, encoder: RowEncoder, source: PostgresSource,
                         counters: SnapshotCounters, total: Int, partitionCount: Int) async throws {
        var after = Position.keyText(partition.lastKey)
        let lower = Position.keyText(partition.lower)?.first
        let upper = Position.keyText(partition.upper)?.first
        var sizer = PageSizer(batchBytes: context.stream.pageBytes)
        while true {
            try Task.checkCancellation()
            if Task.isShuttingDownGracefully { return }
            try await context.waitForSpoolSpace()
            let limit = sizer.rows
            let (sql, params) = KeysetQuery.snapshotPage(table: table, after: after, lower: lower, upper: upper, limit: limit)
            let page = try await source.run(policy, logger: context.logger) { c in
                try await PageReader.read(c, sql: sql, params: params, encoder: encoder, stream: context.name,
                                          reserveBytes: min(context.stream.pageBytes + (1 << 20), 64 << 20), detectDuplicates: true)
            }
            if page.rows == 0 { break }
            try await context.deadLetter(page.deadLetters)
            let first = after.map { Position.key($0) } ?? Position.key(lower.map { [$0] })
            let last = Position.key(page.lastKeyText)
            try await context.spool(page.writer, kind: .snapshot, partition: partition.index, first: first, last: last)
            after = page.lastKeyText
            sizer.observe(rows: page.rows, bytes: page.writer.byteCount)
            let done = await counters.add(rows: page.rows)
            await report(counters: counters, done: done, total: total, partitionCount: partitionCount)
            if page.rows < limit { break }
        }
        try await context.state.markPartitionDone(context.name, index: partition.index)
        await counters.partitionDone()
        await report(counters: counters, done: await counters.rowsDone, total: total, partitionCount: partitionCount)
    }

    private func report(counters: SnapshotCounters, done: Int, total: Int, partitionCount: Int) async {
        guard let progress = context.progress else { return }
        progress.update(SnapshotProgress(stream: context.name, rowsDone: done, rowsTotal: max(total, done),
                                         partitionsDone: await counters.partitionsDone, partitionsTotal: partitionCount,
                                         rowsPerSecond: await counters.rate()))
    }
}
