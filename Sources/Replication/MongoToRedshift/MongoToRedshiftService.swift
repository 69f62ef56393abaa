import BSON
import Foundation
import Logging
import MongoClient
import ServiceLifecycle

/// One Mongo → Redshift stream as a long-running service: snapshot if needed, then tail the change stream and
/// apply batches until graceful shutdown. When the resume token is no longer in the oplog, `on_history_lost`
/// decides: `resnapshot` re-copies this stream only (logged as an error with the reason), `fail` stops it.
public struct MongoToRedshiftService: Service {
    let context: StreamContext
    let redshift: RedshiftEndpoint
    let mongo: MongoEndpoint
    let policy: RetryPolicy

    public init(context: StreamContext, redshift: RedshiftEndpoint, mongo: MongoEndpoint,
                policy: RetryPolicy = .daemon) {
        self.context = context
        self.redshift = redshift
        self.mongo = mongo
        self.policy = policy
    }

    public func run() async throws {
        // Snapshots in a row whose own start left the oplog before the tail could follow them: a second one
        // fails the stream, as a third copy would end the same way (docs/ARCHITECTURE.md, "A snapshot longer
        // than the oplog").
        var outlivedInARow = 0
        try await StreamSupervisor(context: context, policy: policy).run(recover: { error in
            if let replaced = error as? ReplicationError, replaced.code == .sourceReplaced {
                return try await resnapshotReplaced(replaced)
            }
            guard Self.isHistoryLost(error) else { return nil }
            guard context.stream.onHistoryLost == .resnapshot else {
                return .fail("change stream history lost and on_history_lost is fail: \(error)")
            }
            let outlived = try await snapshotOutlivedHistory()
            if outlived && outlivedInARow >= 1 {
                return .fail("\(error) (the second snapshot in a row to outlive the oplog: not copied again; restart once the oplog "
                             + "holds longer than a snapshot takes)")
            }
            try await resnapshot("change stream history lost: the resume token is no longer in the oplog", reason: "\(error)",
                                 note: "history lost, re-snapshot started: \(error)")
            // Counted once the reset is done: a recovery retried after a passing failure meets the same loss again.
            outlivedInARow = outlived ? outlivedInARow + 1 : 0
            return .restart
        }) { try await runOnce() }
    }

    /// The one-shot snapshot of this stream (the `snapshot` command).
    public func snapshot(spoolOnly: Bool) async throws -> SnapshotOutcome {
        var target: RedshiftApplier?
        if !spoolOnly {
            target = try await RedshiftApplier(context: context, endpoint: redshift, policy: policy)
            try await target?.numberAfterTheTargetsCheckpoints()
        }
        return try await snapshot(target: target, spoolOnly: spoolOnly)
    }

    private func snapshot(target: ChangeTarget?, spoolOnly: Bool) async throws -> SnapshotOutcome {
        // The seed's change stream and every page read on the primary: with `readPreference=secondary…` in the URL
        // they could land on members at different points, and writes between the two would be in neither the
        // copy nor the tail.
        let client = try await MongoClient.connect(url: mongo.url, primaryReads: true)
        let source = MongoSnapshotSource(context: context, client: client, database: mongo.database, policy: policy)
        let driver = SnapshotDriver(context: context, source: source, target: target, policy: policy)
        guard context.role == .owner else { return try await driver.run(spoolOnly: spoolOnly) }
        // The owner stops the copy as soon as the tail could no longer follow it (checked every lease period).
        // On the primary, as the copy: another member's oplog may hold a different span.
        let watch = TailStartWatch(context: context, client: try await MongoClient.connect(url: mongo.url, primaryReads: true), database: mongo.database)
        return try await withThrowingTaskGroup(of: SnapshotOutcome?.self) { group in
            group.addTask { try await driver.run(spoolOnly: spoolOnly) }
            group.addTask { [context] in
                try await watch.watch(every: context.config.leaseDuration)
                return nil
            }
            defer { group.cancelAll() }
            while let finished = try await group.next() {
                if let outcome = finished { return outcome }
            }
            throw CancellationError()
        }
    }

    /// A collection replaced under the stream's name: copied again (the rows of the one it replaced go with the
    /// new snapshot's sweep), or with `on_drop: fail`, the stream stops.
    private func resnapshotReplaced(_ error: ReplicationError) async throws -> StreamSupervisor.Recovery {
        guard context.stream.onDrop != .fail else { return .fail("\(error.message) (on_drop: fail)") }
        try await resnapshot("source collection replaced", reason: error.message, note: "re-snapshot started: \(error.message)")
        return .restart
    }

    /// Forgets the stream's positions, partitions and spool (logged as an error with `reason`, noted for `lag`):
    /// the pipeline restarts with a new snapshot.
    private func resnapshot(_ what: String, reason: String, note: String) async throws {
        context.logger.error("\(what); re-snapshotting this stream", metadata: ["reason": "\(reason)"])
        try await context.state.resetStream(context.name, lease: context.lease)
        try? await context.state.recordError(context.name, note)
        await context.spool.removeAll()
    }

    /// History was lost before the tail applied anything past the snapshot's start: during the copy, or at the
    /// tail's first open.
    private func snapshotOutlivedHistory() async throws -> Bool {
        guard let stream = try await context.state.stream(context.name) else { return false }
        if stream.phase == .snapshotting { return true }
        return stream.lifecycle.snapshotComplete && stream.snapshotStart != nil && stream.appliedPosition == stream.snapshotStart
    }

    static func isHistoryLost(_ error: Error) -> Bool {
        if let e = error as? MongoError { return e.isHistoryLost }
        if let e = error as? ReplicationError { return e.code == .historyLost }
        return false
    }

    private func runOnce() async throws {
        // Segment files written but never recorded (a crash between the two) are removed, whatever the phase.
        _ = try await context.state.ensureStream(context.name, direction: context.stream.direction.rawValue)
        try await context.recoverSpool()
        let applier = try await RedshiftApplier(context: context, endpoint: redshift, policy: policy)
        try await applier.numberAfterTheTargetsCheckpoints()
        if try await snapshot(target: applier, spoolOnly: false) == .interrupted { return }
        context.logger.info("streaming from the change stream")
        let idle = IdleAdvance()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [context, mongo] in
                let probe = try await MongoClient.connect(url: mongo.url)
                try await StreamSupervisor.monitorLag(context) {
                    let applied = try? await context.state.stream(context.name)?.appliedPosition?.changeStream?.clusterTime
                    guard let now = try? await ClusterClock.now(probe, database: mongo.database) else { return nil }
                    return ClusterClock.lag(now: now, applied: applied ?? nil).map(LagMeasure.seconds)
                }
            }
            group.addTask { [context, mongo, policy] in
                let tailer = ChangeStreamTailer(context: context, client: try await MongoClient.connect(url: mongo.url), database: mongo.database,
                                                policy: policy, idle: idle, truncateTarget: { try await applier.truncate() })
                try await tailer.run()
            }
            group.addTask { [context, policy] in
                try await SegmentApplyLoop(context: context, target: applier, idle: idle).runUntilShutdown(policy: policy)
            }
            while try await group.next() != nil {}
        }
        context.logger.info("stopped: positions persisted")
    }
}

extension RedshiftApplier {
    /// `on_drop: truncate`.
    func truncate() async throws {
        let statement = sql.truncate()
        _ = try await source.run(policy, logger: context.logger, role: "target") { c in try await c.execute(statement) }
    }
}
