import ArgumentParser
import Foundation
import Logging
import MongoClient
import Replication
import StateStore

extension Mongoshift {
    struct Snapshot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One-shot partitioned initial copy; resumes an interrupted one; exits when applied.",
            discussion: "After it, `run` continues from the source position captured when the snapshot started.")

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Stop once the snapshot is durable in the spool (stage now, apply later with `snapshot` or `run`).")
        var spoolOnly = false

        @Option(help: "Give up on a transient source/target error after this many attempts.")
        var maxAttempts = 8

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let lock = try await options.lockStateDirectory(config, command: "snapshot")
                defer { withExtendedLifetime(lock) {} }
                let state = try await StateStore.open(config)
                let mongo = try await MongoClient.connect(optional: config.mongo?.url)
                let policy = RetryPolicy(maxAttempts: maxAttempts)
                // The staging bucket is checked before any stream depends on it: one line and exit 3 if it fails.
                if S3Probe.needsS3(streams, config.redshift), let staging = config.redshift?.s3 { try await S3Probe.bucketAccess(staging) }
                // Fail fast (exit 3) on an unreachable Mongo rather than after spooling the whole source.
                if let mongo, !spoolOnly || streams.contains(where: { $0.direction == .mongoToRedshift }) {
                    try await policy.run({ try await mongo.ping() })
                }
                for stream in streams {
                    var context = try StreamContext(config: config, stream: stream, state: state, logger: logger, progress: ProgressLine.shared)
                    // The snapshot writes the stream's positions: it takes the lease, or helps the worker that holds it.
                    context.lease = try await state.acquireLease(stream.name, duration: config.leaseDuration)
                    context.role = context.lease == nil ? .helper : .owner
                    if context.role == .helper {
                        print("stream \(stream.name): another worker runs it; copying snapshot partitions to help")
                    }
                    let started = ContinuousClock.now
                    var outcome: SnapshotOutcome
                    do {
                        let copy: @Sendable () async throws -> SnapshotOutcome = { [context, spoolOnly] in
                            while true {
                                do {
                                    switch stream.direction {
                                    case .redshiftToMongo:
                                        let service = RedshiftToMongoService(context: context, redshift: config.redshift!, mongo: config.mongo!, policy: policy)
                                        return try await service.snapshot(spoolOnly: spoolOnly)
                                    case .mongoToRedshift:
                                        let service = MongoToRedshiftService(context: context, redshift: config.redshift!, mongo: config.mongo!, policy: policy)
                                        return try await service.snapshot(spoolOnly: spoolOnly)
                                    }
                                } catch let error where Self.isRecoverable(error) {
                                    // A damaged segment was discarded and its partition rewound: resume, re-reading that range.
                                    logger.warning("resuming after spool recovery", metadata: ["stream": "\(stream.name)", "reason": "\(error)"])
                                }
                            }
                        }
                        // The owner keeps its lease for as long as the copy takes (another worker would take the
                        // stream over after one lease period, and fence the rest of this snapshot).
                        if let lease = context.lease {
                            outcome = try await LeaseHeartbeat.holding(lease, state: state, duration: config.leaseDuration, copy)
                        } else {
                            outcome = try await copy()
                        }
                    } catch {
                        // A failed snapshot does not keep the stream from the operator (`reset`) or the next worker.
                        if let lease = context.lease { try? await state.releaseLease(lease) }
                        throw error
                    }
                    if let lease = context.lease { try? await state.releaseLease(lease) }
                    let seconds = (ContinuousClock.now - started).seconds
                    switch outcome {
                    case .alreadyComplete(let rows):
                        print("stream \(stream.name): snapshot already complete (\(rows) rows applied earlier); nothing to do")
                    case .completed(let rows):
                        print("stream \(stream.name): snapshot complete, \(rows) rows applied in \(String(format: "%.1f", seconds)) s (peak RSS \(PeakMemory.megabytes) MiB)")
                    case .interrupted:
                        print("stream \(stream.name): snapshot interrupted; run `snapshot` again to resume")
                    case .spooled(let segments):
                        print("stream \(stream.name): snapshot spooled in \(segments) segments in \(String(format: "%.1f", seconds)) s (peak RSS \(PeakMemory.megabytes) MiB); apply with `snapshot` or `run`")
                    }
                }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }

        static func isRecoverable(_ error: Error) -> Bool {
            if let e = error as? ReplicationError { return e.code == .spool }
            if let e = error as? StateStoreError { return e.code == .rewound }
            return false
        }
    }
}
