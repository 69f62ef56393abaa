import BSON
import Changes
import Logging
import MongoClient
import ServiceLifecycle

/// Keeps an eye, while a Mongo snapshot copies, on the oplog entry its tail will start from (docs/ARCHITECTURE.md,
/// "A snapshot longer than the oplog"): warns once (in the log) when the copy's pace will outlast it, and stops the copy as
/// soon as it is gone — hours of copying would end in a tail that cannot start.
struct TailStartWatch: Sendable {
    let context: StreamContext
    /// A client of its own: the copy's client runs one call at a time.
    let client: MongoClient
    let database: String

    /// The error the copy stops with: history lost, saying what to change.
    static func outlived(_ stream: String, start: BSONTimestamp) -> ReplicationError {
        ReplicationError(.historyLost, stream: stream,
                         "the snapshot outlived the oplog: the change stream position it started at (\(start.readable)) is no longer in the oplog, "
                         + "so the tail cannot follow the copy; make the oplog hold longer than a snapshot takes (a larger oplog or "
                         + "oplogMinRetentionHours), or copy faster (more partitions); `run` copies once more, "
                         + "`mongoshift reset --stream \(stream) --to snapshot` starts a `snapshot` over")
    }

    /// Throws `outlived` when the oplog no longer holds `start`; says nothing when the oplog cannot be read.
    func confirm(_ start: StreamPosition) async throws {
        guard let seed = start.changeStream?.clusterTime else { return }
        let oldest = await ClusterClock.oplogEdge(client, newest: false)
        if SeedRetention.judge(seed: seed, oldest: oldest, copyLeft: nil) == .lost { throw Self.outlived(context.name, start: seed) }
    }

    /// Checks every `period` until cancelled or graceful shutdown; throws `outlived` once the start is gone.
    func watch(every period: Duration) async throws {
        var total: Int?
        var pace = CopyPace()
        var warned = false
        // A resumed copy is checked at once; a new one as soon as it is planned (the watch may begin before).
        var first = true
        while !Task.isShuttingDownGracefully {
            if !first { try await Task.sleep(for: period) }
            first = false
            guard let stream = try await context.state.stream(context.name), stream.phase == .snapshotting,
                  let seed = stream.snapshotStart?.changeStream?.clusterTime else { continue }
            if total == nil {
                total = try? await client.count(database: database, collection: context.stream.collection,
                                                filter: context.stream.match?.document ?? Document())
            }
            let done = (try? await context.state.partitions(context.name))?.reduce(0) { $0 + $1.rows } ?? 0
            let copyLeft = pace.remaining(rowsDone: done, rowsTotal: total ?? 0, now: .now)
            switch SeedRetention.judge(seed: seed, oldest: await ClusterClock.oplogEdge(client, newest: false), copyLeft: copyLeft) {
            case .lost:
                let error = Self.outlived(context.name, start: seed)
                context.logger.error("snapshot stopped: its start is no longer in the oplog", metadata: ["reason": "\(error.message)"])
                throw error
            case .atRisk(let copyLeft, let seedLeft) where !warned:
                warned = true
                let message = "at its pace the snapshot needs about \(Int(copyLeft.seconds)) s more, but its start leaves the oplog in about "
                    + "\(Int(seedLeft.seconds)) s: the tail will not be able to follow it; make the oplog hold longer (oplogMinRetentionHours)"
                context.logger.warning("snapshot may outlive the oplog", metadata: ["reason": "\(message)"])
            case .atRisk, .holds, .unknown:
                break
            }
        }
    }
}
