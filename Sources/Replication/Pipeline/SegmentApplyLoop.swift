import Changes
import Foundation
import Logging
import ServiceLifecycle
import ShiftCore
import Spool
import StateStore

public struct ApplyOutcome: Sendable {
    public var applied = 0
    public var stale = 0
    /// Re-read rows that had not changed (lookback): counted, not re-written.
    public var rescanned = 0
    public var deadLetters: [DeadLetterFile.Entry] = []
    public init(applied: Int = 0, stale: Int = 0, rescanned: Int = 0, deadLetters: [DeadLetterFile.Entry] = []) {
        self.applied = applied
        self.stale = stale
        self.rescanned = rescanned
        self.deadLetters = deadLetters
    }
}

/// A segment read and made ready for its target ahead of its turn (`ChangeTarget.prepare`).
public struct PreparedSegment: Sendable {
    public let segment: SegmentRecord
    /// The changes, for targets that prepare nothing (empty when `work` holds all the target needs).
    public let changes: [Change]
    /// What the target computed ahead, in its own type.
    public let work: (any Sendable)?

    public init(segment: SegmentRecord, changes: [Change], work: (any Sendable)? = nil) {
        self.segment = segment
        self.changes = changes
        self.work = work
    }
}

/// A target that applies a segment's changes idempotently.
public protocol ChangeTarget: Sendable {
    func apply(_ changes: [Change], segment: SegmentRecord) async throws -> ApplyOutcome
    /// The work on a segment that needs no target connection, done while the previous segment is applied.
    /// `previous`: that segment, prepared and not yet applied — whatever this one learns builds on it. Preparing
    /// changes nothing the target keeps until the segment is applied (a failed apply discards what follows it).
    func prepare(_ changes: [Change], segment: SegmentRecord, after previous: PreparedSegment?) async throws -> PreparedSegment
    func apply(_ prepared: PreparedSegment) async throws -> ApplyOutcome
    /// The highest snapshot generation the target's rows carry (0: none, or the target does not keep them): a new
    /// snapshot's generation is above it even when the state store was started afresh.
    func highestGeneration() async throws -> Int64
    /// The snapshot of `generation` is applied whole: remove what it did not write (documents deleted while the
    /// history was lost). Called before the snapshot is marked complete; idempotent.
    func sweep(olderThan generation: Int64) async throws
}

extension ChangeTarget {
    public func prepare(_ changes: [Change], segment: SegmentRecord, after previous: PreparedSegment?) async throws -> PreparedSegment {
        PreparedSegment(segment: segment, changes: changes)
    }
    public func apply(_ prepared: PreparedSegment) async throws -> ApplyOutcome {
        try await apply(prepared.changes, segment: prepared.segment)
    }
    public func highestGeneration() async throws -> Int64 { 0 }
    public func sweep(olderThan generation: Int64) async throws {}
}

/// Applies a stream's durable segments in sequence order: read (verified), apply, persist the applied position,
/// then delete the file — in that order, so a crash anywhere replays at most one segment, idempotently. The next
/// segment is read and prepared while one is applied (docs/ARCHITECTURE.md, "Apply"): at most two segments are
/// in memory.
struct SegmentApplyLoop {
    let context: StreamContext
    let target: ChangeTarget
    /// An idle extractor's newer position, persisted once the spool is drained (tail only).
    var idle: IdleAdvance?

    /// Applies every segment recorded now. Returns the number of segments applied.
    @discardableResult
    func applyPending() async throws -> Int {
        let segments = try await context.state.pendingSegments(context.name)
        guard let first = segments.first else { return 0 }
        var ready = try await read(first, after: nil)
        var count = 0
        for index in segments.indices {
            try Task.checkCancellation()
            // On SIGTERM: finish the segment in flight, then stop; the rest stays durable in the spool.
            if Task.isShuttingDownGracefully { break }
            let prepared = try await settle(ready)
            async let upcoming = read(index + 1 < segments.count ? segments[index + 1] : nil, after: prepared)
            try await apply(prepared)
            count += 1
            guard let next = try await upcoming else { break }
            ready = next
        }
        return count
    }

    /// The daemon's applier: applies segments as they appear until graceful shutdown, retrying transient
    /// target errors forever (the spool holds the backlog meanwhile); with the spool drained, persists the
    /// idle extractor's position.
    func runUntilShutdown(policy: RetryPolicy) async throws {
        while true {
            let applied = try await policy.run({ try await applyPending() }, report: report)
            if Task.isShuttingDownGracefully { return }
            if applied == 0 {
                try await advanceIdle()
                try await pause(.milliseconds(100))
            }
        }
    }

    /// A snapshot's applier: drains segments while extraction runs, until extraction finished and the spool is empty.
    func runDuringSnapshot(counters: SnapshotCounters, policy: RetryPolicy) async throws {
        while true {
            let finished = await counters.extractionFinished
            let applied = try await policy.run({ try await applyPending() }, report: report)
            if Task.isShuttingDownGracefully && (finished || applied == 0) { return }
            if finished && applied == 0, try await context.state.pendingSegments(context.name).isEmpty { return }
            if applied == 0 { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    private func advanceIdle() async throws {
        guard let idle, let (position, generation) = idle.take() else { return }
        do {
            try await context.state.advanceIdle(context.name, to: position, generation: generation, lease: try context.requireLease())
        } catch let error as StateStoreError where error.code == .rewound {
            // The extract position was rewound since: the extractor restarts from the store; nothing to persist.
        }
    }

    private var report: RetryReport { RetryReport(logger: context.logger, what: "target", retries: context.metrics.retries) }

    /// A segment read from the spool and prepared, or why it could not be read.
    private enum ReadSegment {
        case prepared(PreparedSegment)
        case corrupt(SegmentRecord, SpoolError)
    }

    private func read(_ segment: SegmentRecord?, after previous: PreparedSegment?) async throws -> ReadSegment? {
        guard let segment else { return nil }
        let decoded: SpoolSegment
        do {
            decoded = try await context.spool.read(segment.seq)
        } catch let error as SpoolError where error.code == .corrupt {
            return .corrupt(segment, error)
        }
        return .prepared(try await target.prepare(decoded.changes, segment: segment, after: previous))
    }

    /// A read segment at its turn. A torn or corrupt one is never half-applied: it is forgotten and its range
    /// re-extracted — the discard rewinds the extract position (a new generation), so the running extractor can
    /// record nothing more.
    private func settle(_ read: ReadSegment?) async throws -> PreparedSegment {
        switch read {
        case .prepared(let prepared)?:
            return prepared
        case .corrupt(let segment, let error)?:
            let path = context.spool.segmentPath(segment.seq)
            context.logger.error("corrupt spool segment: re-extracting its range", metadata: ["segment": "\(path)", "reason": "\(error.reason)"])
            idle?.clear()
            try await context.state.discardSegment(segment, lease: context.lease)
            await context.spool.remove(segment.seq)
            throw ReplicationError(.spool, stream: context.name, "segment \(segment.seq) was corrupt (\(error.reason)); its range will be re-extracted")
        case nil:
            preconditionFailure("a segment is read before it is settled")
        }
    }

    private func apply(_ prepared: PreparedSegment) async throws {
        let segment = prepared.segment
        let started = ContinuousClock.now
        // Tail and repair segments belong to the lease holder; snapshot pages to the partition's claimer.
        if segment.kind != .snapshot { try await context.assertLease() }
        let outcome = try await target.apply(prepared)
        CrashPoint.hit(CrashPoint.targetWritten)
        try await context.deadLetter(outcome.deadLetters)
        try await context.state.markApplied(segment, applied: outcome.applied, staleSkipped: outcome.stale, lease: context.lease)
        CrashPoint.hit(CrashPoint.checkpointWritten)
        await context.spool.remove(segment.seq)
        context.metrics.applyLatency.record(duration: ContinuousClock.now - started)
        context.metrics.rowsApplied.increment(by: Int64(outcome.applied))
        context.metrics.staleSkipped.increment(by: Int64(outcome.stale))
        context.metrics.rowsRescanned.increment(by: Int64(outcome.rescanned))
        await context.updateSpoolGauge()
    }
}
