import Changes
import Logging
import ServiceLifecycle
import Spool
import StateStore

/// A source the snapshot driver copies from (Redshift/PostgreSQL key ranges, Mongo `_id` ranges).
protocol SnapshotSource: Sendable {
    /// How many partitions may be copied at once (each copier is one source connection).
    var copiers: Int { get }
    /// Captures the position the tail will start from — before anything is read — then cuts the key space.
    func plan() async throws -> SnapshotPlan
    /// Rows to expect, for progress (an estimate is fine).
    func estimatedRows() async throws -> Int
    /// Copies `partition` from where it stands (after `lastKey`, else after `lower`) up to `upper`, page by page
    /// into `pages`, until the range is exhausted or graceful shutdown begins.
    func copy(_ partition: PartitionState, copier: Int, into pages: SnapshotPages) async throws
    /// Once every page is copied, before the snapshot counts as done: throws (history lost) when the tail can no
    /// longer start from the position captured at planning.
    func confirmTailStart(_ start: StreamPosition) async throws
}

extension SnapshotSource {
    func confirmTailStart(_ start: StreamPosition) async throws {}
}

/// What planning decided: the captured source position, where the tail starts, and the key ranges.
struct SnapshotPlan: Sendable {
    var start: StreamPosition
    var tailSeed: StreamPosition?
    /// (exclusive lower, inclusive upper); nil = unbounded.
    var bounds: [(lower: SnapshotKey?, upper: SnapshotKey?)]
    /// What to log about the plan.
    var summary: Logger.Metadata = [:]
}

/// Where a snapshot source hands its pages: each becomes a durable spool segment recorded against the partition,
/// and counts towards progress.
struct SnapshotPages: Sendable {
    let context: StreamContext
    let counters: SnapshotCounters
    let total: Int
    let partitionCount: Int

    /// The page size target (bytes of change records).
    var pageBytes: Int { context.stream.pageBytes }

    func waitForSpace() async throws { try await context.waitForSpoolSpace() }

    func deadLetter(_ entries: [DeadLetterFile.Entry]) async throws { try await context.deadLetter(entries) }

    func spool(_ writer: SpoolSegmentWriter, partition: Int, first: SnapshotKey?, last: SnapshotKey?) async throws {
        try await context.spoolPage(writer, partition: partition, first: first, last: last)
        let done = await counters.add(rows: writer.count)
        await report(done: done)
    }

    func report(done: Int) async {
        guard let progress = context.progress else { return }
        progress.update(SnapshotProgress(stream: context.name, rowsDone: done, rowsTotal: total,
                                         partitionsDone: await counters.partitionsDone, partitionsTotal: partitionCount,
                                         rowsPerSecond: await counters.rate()))
    }
}

/// The partitioned, resumable initial copy of one stream, the same for every source (docs/ARCHITECTURE.md,
/// "Snapshot"). It owns every phase transition of a snapshot:
///
/// 1. A failed stream resumes where it stood; a completed snapshot is not repeated.
/// 2. The owner plans once: the source position is captured first (the tail starts from it, so changes made
///    while copying are caught; the overlap is harmless because applies are idempotent), then partitions.
/// 3. Rounds: `copiers` tasks claim partitions and copy them page by page (each page a durable segment recorded
///    with the partition's last key, so a crash resumes at the page), while this worker's pages are applied.
///    Helpers (another worker owns the stream) only copy.
/// 4. The owner completes the snapshot once every partition is done and every page applied, by any worker: the
///    target first sweeps what this snapshot's generation did not write, then the tail takes over.
struct SnapshotDriver<Source: SnapshotSource> {
    let context: StreamContext
    let source: Source
    /// Where pages are applied; nil for `--spool-only`.
    let target: ChangeTarget?
    let policy: RetryPolicy

    func run(spoolOnly: Bool) async throws -> SnapshotOutcome {
        let name = context.name
        var state = try await context.state.ensureStream(name, direction: context.stream.direction.rawValue)
        if context.role == .owner { state.lifecycle = try await context.state.resumeStream(name) }
        if state.lifecycle.snapshotComplete { return .alreadyComplete(rowsApplied: state.rowsApplied) }
        try await context.recoverSpool()
        try await context.state.releaseClaims(name)
        // A helper only copies partitions of a snapshot the owner planned.
        if context.role == .helper && state.phase != .snapshotting { return .interrupted }
        var partitions = try await context.state.partitions(name)
        if (state.phase == .new || partitions.isEmpty) && context.role == .owner {
            let plan = try await source.plan()
            let planned = plan.bounds.enumerated().map { PartitionState(index: $0, lower: $1.lower, upper: $1.upper) }
            let floor = try await target?.highestGeneration() ?? 0
            let generation = try await context.state.beginSnapshot(name, snapshotStart: plan.start, tailSeed: plan.tailSeed, partitions: planned,
                                                                   generationAtLeast: floor + 1, lease: context.lease)
            context.logger.info("snapshot planned", metadata: plan.summary.merging(["partitions": "\(planned.count)",
                                                                                      "generation": "\(generation)"]) { $1 })
            partitions = try await context.state.partitions(name)
        } else {
            context.logger.info("resuming snapshot", metadata: [
                "partitions_done": "\(partitions.filter { $0.status == .done }.count)/\(partitions.count)",
                "rows_spooled": "\(partitions.reduce(0) { $0 + $1.rows })"])
        }
        let total = try await source.estimatedRows()
        let claimFor = context.config.leaseDuration * 4
        var stalled = StalledPages(limit: claimFor)
        repeat {
            let counters = SnapshotCounters(rowsDone: partitions.reduce(0) { $0 + $1.rows },
                                            partitionsDone: partitions.filter { $0.status == .done }.count)
            let pages = SnapshotPages(context: context, counters: counters, total: total, partitionCount: partitions.count)
            try await round(pages: pages, claimFor: claimFor, spoolOnly: spoolOnly)
            partitions = try await context.state.partitions(name)
            // Every partition copied, pages still pending, none applied for a claim's duration: the rest are in the
            // spools of workers that left (helpers applying their own pages make progress). Copied again here.
            if context.role == .owner && !spoolOnly, stalled.check(try await context.state.snapshotRemaining(name)) {
                let reclaimed = try await context.state.reclaimOtherWorkersPages(name)
                if !reclaimed.isEmpty {
                    context.logger.warning("snapshot pages of workers that left were never applied: copying their partitions again",
                                           metadata: ["partitions": "\(reclaimed)"])
                    partitions = try await context.state.partitions(name)
                }
            }
        } while try await !context.snapshotRoundsOver(spoolOnly: spoolOnly)
        context.progress?.finish(stream: name)
        if Task.isShuttingDownGracefully {
            context.logger.info("snapshot interrupted by shutdown; it resumes on the next run")
            return .interrupted
        }
        if context.role == .owner, let start = try await context.state.stream(name)?.snapshotStart {
            try await source.confirmTailStart(start)
        }
        if spoolOnly { return .spooled(segments: try await context.state.spoolBacklog(name).segments) }
        if context.role == .helper { return .interrupted }
        if let target { try await target.sweep(olderThan: try await context.state.snapshotGeneration(name)) }
        try await context.state.completeSnapshot(name, lease: context.lease)
        let final = try await context.state.stream(name)!
        context.logger.info("snapshot complete", metadata: ["rows_applied": "\(final.rowsApplied)", "stale_skipped": "\(final.staleSkipped)",
                                                             "dead_lettered": "\(final.rowsDeadLettered)"])
        return .completed(rowsCopied: final.rowsApplied)
    }

    /// Claims and copies partitions until none is left to claim, applying this worker's pages meanwhile. A copier
    /// never claims a partition another copier here is copying, and their claims are renewed while they copy (a
    /// whole UNLOAD can run before the first page would renew one).
    private func round(pages: SnapshotPages, claimFor: Duration, spoolOnly: Bool) async throws {
        let name = context.name
        let copiers = max(1, min(source.copiers, pages.partitionCount))
        let inFlight = PartitionsInFlight()
        let renewEvery = context.config.leaseDuration
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [context, source] in
                // Children say whether they were a copier: the claim renewer runs until the copiers are done.
                try await withThrowingTaskGroup(of: Bool.self) { extractors in
                    for copier in 0..<copiers {
                        extractors.addTask {
                            while !Task.isShuttingDownGracefully,
                                  let partition = try await context.state.claimPartition(name, duration: claimFor, excluding: await inFlight.indices) {
                                await inFlight.insert(partition.index)
                                try await source.copy(partition, copier: copier, into: pages)
                                if Task.isShuttingDownGracefully { return true }
                                try await context.state.markPartitionDone(name, index: partition.index)
                                await inFlight.remove(partition.index)
                                await pages.counters.partitionDone()
                                await pages.report(done: await pages.counters.rowsDone)
                            }
                            return true
                        }
                    }
                    extractors.addTask {
                        while true {
                            do { try await Task.sleep(for: renewEvery) } catch { return false }
                            try await context.state.renewClaims(name, partitions: await inFlight.indices, duration: claimFor)
                        }
                    }
                    var copying = copiers
                    while copying > 0, let wasCopier = try await extractors.next() {
                        if wasCopier { copying -= 1 }
                    }
                    extractors.cancelAll()
                }
                await pages.counters.finishExtraction()
            }
            if !spoolOnly, let target {
                group.addTask { [context, policy] in
                    try await SegmentApplyLoop(context: context, target: target).runDuringSnapshot(counters: pages.counters, policy: policy)
                }
            }
            while try await group.next() != nil {}
        }
    }
}

/// Watches the snapshot pages pending once every partition is copied: stalled when their count has not moved for
/// `limit`.
struct StalledPages {
    let limit: Duration
    private var count = -1
    private var since = ContinuousClock.now

    init(limit: Duration) { self.limit = limit }

    mutating func check(_ remaining: (partitions: Int, segments: Int)) -> Bool {
        guard remaining.partitions == 0 && remaining.segments > 0 else {
            count = -1
            return false
        }
        if remaining.segments != count {
            (count, since) = (remaining.segments, .now)
            return false
        }
        guard ContinuousClock.now - since >= limit else { return false }
        (count, since) = (-1, .now)
        return true
    }
}
