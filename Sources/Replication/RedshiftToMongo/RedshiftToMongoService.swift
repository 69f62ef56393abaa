import BSON
import Foundation
import Logging
import MongoClient
import PostgresClient
import ServiceLifecycle
import Spool
import StateStore

/// One Redshift → Mongo stream as a long-running service: snapshot if needed, then tail, apply and reconcile
/// concurrently until graceful shutdown. Transient errors are retried forever with backoff; a permanent error
/// marks this stream failed (with the reason in the state store) and leaves the other streams running.
public struct RedshiftToMongoService: Service {
    let context: StreamContext
    let redshift: RedshiftEndpoint
    let mongo: MongoEndpoint
    let policy: RetryPolicy

    public init(context: StreamContext, redshift: RedshiftEndpoint, mongo: MongoEndpoint, policy: RetryPolicy = .daemon) {
        self.context = context
        self.redshift = redshift
        self.mongo = mongo
        self.policy = policy
    }

    public func run() async throws {
        try await StreamSupervisor(context: context, policy: policy).run { try await runOnce() }
    }

    /// The snapshot alone (the `snapshot` command, and helpers copying partitions of a stream another worker owns).
    /// `spoolOnly`: stop once every page is durable in the spool.
    public func snapshot(spoolOnly: Bool) async throws -> SnapshotOutcome {
        let target: ChangeTarget? = spoolOnly ? nil : MongoTarget(applier: try await applier(), context: context)
        let stage = redshift.dialect == .redshift ? redshift.s3.map { S3Stage(staging: $0, stream: context.name) } : nil
        let source = RedshiftSnapshotSource(reader: try await SourceReader.open(context: context, redshift: redshift, policy: policy), stage: stage)
        let outcome = try await SnapshotDriver(context: context, source: source, target: target, policy: policy).run(spoolOnly: spoolOnly)
        if let stage, context.role == .owner, case .completed = outcome {
            try await source.removeUnloadedFiles(stage)
        } else if let stage, context.role == .owner, case .alreadyComplete = outcome {
            // A crash between a partition's last page and its files' deletion left them: gone now.
            try await source.removeUnloadedFiles(stage)
        }
        return outcome
    }

    private func applier() async throws -> MongoApplier {
        MongoApplier(client: try await MongoClient.connect(url: mongo.url), database: mongo.database, collection: context.stream.collection,
                     maxWritesPerSecond: context.stream.maxWritesPerSecond)
    }

    private func runOnce() async throws {
        // Segment files written but never recorded (a crash between the two) are removed, whatever the phase.
        _ = try await context.state.ensureStream(context.name, direction: context.stream.direction.rawValue)
        try await context.recoverSpool()
        let applier = try await applier()
        if try await snapshot(spoolOnly: false) == .interrupted { return }
        let reader = try await SourceReader.open(context: context, redshift: redshift, policy: policy)
        let table = reader.table
        let encoder = RowEncoder(table: table)
        let from = try await context.state.extractCursor(context.name).position
        context.logger.info("streaming", metadata: ["from": "\(from?.description ?? "-")"])

        try await withThrowingTaskGroup(of: Void.self) { group in
            // A stream without a watermark (a snapshot, no tail) has no lag to measure.
            if let watermark = table.watermarkName {
                group.addTask { [context, redshift] in
                    let probe = PostgresSource(url: redshift.url)
                    let isInteger = table.watermarkKind == .integer
                    try await StreamSupervisor.monitorLag(context) {
                        let applied = try? await context.state.stream(context.name)?.appliedPosition?.watermark?.value
                        guard let head = try? await probe.run(RetryPolicy(maxAttempts: 1), logger: context.logger, { c in
                            try await WatermarkLag.sourceHead(c, table: context.stream.table, column: watermark, isInteger: isInteger)
                        }) else { return nil }
                        return WatermarkLag.lag(head: head, applied: applied ?? nil)
                    }
                }
            }
            if table.watermarkIndex != nil {
                group.addTask {
                    try await WatermarkTailer(reader: reader, encoder: encoder).run()
                }
            }
            group.addTask { [context, policy] in
                try await SegmentApplyLoop(context: context, target: MongoTarget(applier: applier, context: context)).runUntilShutdown(policy: policy)
            }
            group.addTask { [context] in
                // Tombstones outlive any late replay they guard against, then go.
                while !Task.isShuttingDownGracefully {
                    do {
                        let purged = try await applier.purgeTombstones(olderThan: context.stream.tombstoneRetention)
                        if purged > 0 { context.logger.debug("purged tombstones", metadata: ["count": "\(purged)"]) }
                    } catch where RetryPolicy.isTransient(error) {
                        context.logger.debug("tombstone purge failed, will retry", metadata: ["error": "\(error)"])
                    }
                    try await pause(.seconds(3600))
                }
            }
            if context.stream.reconcileEvery > .zero {
                group.addTask { [context] in
                    let reconciler = HardDeleteReconciler(reader: reader.onNewConnection(), applier: applier)
                    var deleteGuard = DeleteGuard(maxRatio: context.stream.maxDeleteRatio, graceSeconds: context.stream.deleteGrace.seconds)
                    var warnedInexact = false
                    while !Task.isShuttingDownGracefully {
                        try await pause(context.stream.reconcileEvery)
                        if Task.isShuttingDownGracefully { break }
                        // Reconcile against a drained spool, so pending inserts are not counted as differences.
                        guard try await context.state.spoolBacklog(context.name).segments == 0 else { continue }
                        do {
                            // A reconcile is read-mostly and idempotent: SIGTERM abandons it rather than wait.
                            let found = try await cancelWhenGracefulShutdown { [deleteGuard] in try await reconciler.findMissing(limit: deleteGuard.limit) }
                            if found.inexactKeys {
                                if !warnedInexact {
                                    context.logger.warning("hard-delete reconcile skipped: the key holds timestamps or floats, whose Mongo form is not exact",
                                                           metadata: ["key": "\(context.stream.key)"])
                                    warnedInexact = true
                                }
                                continue
                            }
                            let decision = deleteGuard.decide(missing: found.missing, complete: found.complete, targetCount: found.targetCount,
                                                              now: Date().timeIntervalSince1970)
                            try await applyReconcile(decision, found: found, reconciler: reconciler, context: context, applier: applier)
                        } catch where Task.isShuttingDownGracefully {
                            break
                        } catch where RetryPolicy.isTransient(error) {
                            context.logger.warning("reconcile failed, will retry next period", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
            while try await group.next() != nil {}
        }
        context.logger.info("stopped: positions persisted")
    }

    /// Carries out the guard's decision: deletes (and clears a refusal note), or refuses — logged once per run of
    /// refusals, counted, and noted for `lag` and `check`.
    private func applyReconcile(_ decision: DeleteGuard.Decision, found: HardDeleteReconciler.Result, reconciler: HardDeleteReconciler,
                                context: StreamContext, applier: MongoApplier) async throws {
        switch decision {
        case .delete(let keys, let waiting):
            // Versions first, then the source: a row inserted again after its confirmation keeps its document.
            let seen = keys.isEmpty ? [] : try await applier.seenDocuments(keys)
            let confirmed = seen.isEmpty ? [] : Set(try await reconciler.stillMissing(seen.map(\.key)))
            let removed = try await applier.deleteKeys(seen.filter { confirmed.contains($0.key) })
            if removed > 0 { context.logger.info("reconcile deleted documents whose source rows are gone", metadata: ["count": "\(removed)"]) }
            context.logger.debug("reconcile done", metadata: ["ranges": "\(found.rangesChecked)", "mismatched": "\(found.rangesMismatched)",
                                                               "deleted": "\(removed)", "waiting_for_second_sighting": "\(waiting)"])
            if try await context.state.note(.reconcileRefused, stream: context.name) != nil {
                try await context.state.setNote(.reconcileRefused, stream: context.name, nil)
                context.logger.notice("hard-delete reconcile within max_delete_ratio again")
            }
        case .refuse(let missing, let limit):
            context.metrics.reconcileRefusals.increment()
            let share = found.targetCount > 0 ? Int((Double(missing) / Double(found.targetCount) * 100).rounded()) : 100
            let text = "\(found.complete ? "" : "more than ")\(missing) of \(found.targetCount) documents (\(found.complete ? "" : "over ")\(share) %) are "
                + "missing at the source, over max_delete_ratio (\(limit) documents): nothing deleted"
            let previous = try await context.state.note(.reconcileRefused, stream: context.name)
            if previous == nil {
                context.logger.error("hard-delete reconcile refused", metadata: ["missing": "\(missing)", "limit": "\(limit)", "target_documents": "\(found.targetCount)"])
            }
            try await context.state.setNote(.reconcileRefused, stream: context.name,
                                            "\(ISODate.format(seconds: Int64(Date().timeIntervalSince1970))) \(text)")
        }
    }
}

