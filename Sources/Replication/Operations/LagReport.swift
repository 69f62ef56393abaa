import BSON
import Foundation
import Logging
import MongoClient
import PostgresClient
import StateStore

/// How far one stream is behind, computed without comparing clocks of different machines (docs/ARCHITECTURE.md,
/// "Lag"):
/// Redshift → Mongo compares the source's newest watermark with the applied watermark (both source values);
/// Mongo → Redshift compares the server's cluster time (`operationTime` of a ping) with the applied event's
/// cluster time (both the server's clock).
public struct StreamLag: Sendable {
    public var name: String
    public var direction: String
    /// `new`, `snapshotting n/m partitions`, `streaming`, `failed`.
    public var phase: String
    /// Seconds behind (time watermarks, Mongo cluster times); nil for integer watermarks, which say nothing about
    /// time, and when it cannot be measured.
    public var lagSeconds: Double?
    /// Integer watermarks: how many units the applied watermark is behind the source's newest.
    public var lagUnits: Int64?
    public var appliedPosition: String?
    public var sourceHead: String?
    public var spoolSegments = 0
    public var spoolRows = 0
    public var spoolBytes = 0
    public var deadLetters = 0
    public var rowsApplied = 0
    public var lastError: String?
    public var lastErrorAt: Double?
    /// Why the lag could not be measured (source unreachable, ...).
    public var probeError: String?
    /// Mongo → Redshift: how old the applied resume token is, and how much history the oplog holds (when the
    /// server lets us read local.oplog.rs). A token older than the window cannot resume.
    public var resumeTokenAgeSeconds: Double?
    public var oplogWindowSeconds: Double?
    /// The worker holding the stream's lease (nil: not running anywhere; an expired lease shows as such).
    public var owner: String?
    /// Redshift → Mongo: the open transaction writing the table that holds the watermark back (it may still
    /// commit rows stamped before the watermark), when one does.
    public var heldBy: HeldBy?
    /// The last operator reset (`mongoshift reset`): when, by whom, to what.
    public var lastReset: String?
    /// The last hard-delete reconcile refused to delete (`max_delete_ratio`); nil once a cycle passes.
    public var reconcileRefused: String?

    public init(name: String, direction: String, phase: String) {
        (self.name, self.direction, self.phase) = (name, direction, phase)
    }

    public struct HeldBy: Sendable {
        public var pid: String
        public var xid: String?
        /// Transaction start, as the source prints it (UTC).
        public var since: String
        public var ageSeconds: Double
    }
}

/// `mongoshift lag`: every stream's row in the state store plus the source's head, measured skew-free.
public enum LagReport {
    /// Reads `state` (open it read-only in a separate process: a reader never blocks a running daemon) and asks
    /// each source for its head. `state == nil`: nothing has run yet.
    public static func measure(config: ReplicationConfig, streams: [StreamConfig], state: StateStore?, logger: Logger) async -> [StreamLag] {
        var out: [StreamLag] = []
        var source: PostgresConnection?
        let leases = (try? await state?.leases()) ?? []
        for stream in streams {
            var lag = StreamLag(name: stream.name, direction: stream.direction.rawValue, phase: "new")
            if let lease = leases.first(where: { $0.stream == stream.name }) {
                lag.owner = lease.expiresAt >= Date().timeIntervalSince1970 ? "\(lease.holder) (epoch \(lease.epoch))" : nil
            }
            var appliedWatermark: String?
            var streaming = false
            if let state, let s = try? await state.stream(stream.name) {
                lag.phase = s.phase.rawValue
                streaming = s.phase == .streaming
                if s.phase == .snapshotting, let parts = try? await state.partitions(stream.name) {
                    lag.phase = "snapshotting \(parts.filter { $0.status == .done }.count)/\(parts.count) partitions"
                }
                lag.rowsApplied = s.rowsApplied
                lag.deadLetters = s.rowsDeadLettered
                lag.lastError = s.lastError
                lag.lastErrorAt = s.lastErrorAt
                lag.lastReset = try? await state.note(.lastReset, stream: stream.name)
                lag.reconcileRefused = try? await state.note(.reconcileRefused, stream: stream.name)
                if let backlog = try? await state.spoolBacklog(stream.name) {
                    (lag.spoolSegments, lag.spoolRows, lag.spoolBytes) = (backlog.segments, backlog.rows, backlog.bytes)
                }
                lag.appliedPosition = s.appliedPosition?.description
                appliedWatermark = s.appliedPosition?.watermark?.value
                if stream.direction == .mongoToRedshift, let endpoint = config.mongo, streaming {
                    await measureMongo(&lag, applied: s.appliedPosition?.changeStream?.clusterTime, endpoint: endpoint)
                }
            }
            guard stream.direction == .redshiftToMongo, stream.watermark != nil, let redshift = config.redshift else {
                out.append(lag)
                continue
            }
            do {
                if source == nil { source = try await PostgresConnection.connect(redshift.url, connectTimeoutSeconds: 5) }
                let head = try await WatermarkLag.sourceHead(source!, table: stream.table, watermark: stream.watermark!)
                lag.sourceHead = head.text
                if streaming {
                    switch WatermarkLag.lag(head: head, applied: appliedWatermark) {
                    case .seconds(let seconds)?: lag.lagSeconds = seconds
                    case .units(let units)?: lag.lagUnits = units
                    case nil: break
                    }
                }
                let horizon = try await TransactionHorizon.probe(source!, dialect: redshift.dialect, table: stream.table, maxOf: nil)
                if let writer = horizon.oldestWriter, Double(horizon.now - writer.start) / 1_000_000 >= stream.safetyLag.seconds {
                    lag.heldBy = StreamLag.HeldBy(pid: writer.pid, xid: writer.xid, since: ValueText.timestampMicrosText(writer.start),
                                        ageSeconds: Double(horizon.now - writer.start) / 1_000_000)
                }
            } catch {
                lag.probeError = "\(error)"
            }
            out.append(lag)
        }
        return out
    }

    static func measureMongo(_ lag: inout StreamLag, applied: BSONTimestamp?, endpoint: MongoEndpoint) async {
        do {
            let client = try await MongoClient.connect(url: endpoint.url)
            guard let now = try await ClusterClock.now(client, database: endpoint.database) else {
                lag.probeError = "the server reports no operationTime (not a replica set?)"
                return
            }
            lag.sourceHead = "cluster time \(now.readable)"
            lag.lagSeconds = ClusterClock.lag(now: now, applied: applied)
            lag.resumeTokenAgeSeconds = lag.lagSeconds
            if let window = await ClusterClock.oplogWindow(client) { lag.oplogWindowSeconds = window.seconds }
        } catch {
            lag.probeError = "\(error)"
        }
    }
}
