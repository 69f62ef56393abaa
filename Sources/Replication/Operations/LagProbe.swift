import Foundation
import Logging
import MongoClient
import PostgresClient

/// How far one stream is behind, computed without comparing clocks of different machines (DESIGN §10):
/// Redshift → Mongo compares the source's newest watermark with the applied watermark (both source values);
/// Mongo → Redshift compares the server's cluster time (`operationTime` of a ping) with the applied event's
/// cluster time (both the server's clock).
public struct StreamLag: Sendable {
    public var name: String
    public var direction: String
    /// `new`, `snapshotting n/m partitions`, `streaming`, `failed`.
    public var phase: String
    public var lagSeconds: Double?
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
}

public enum LagProbe {
    /// Reads the state store (read-only: never blocks a running daemon) and asks the source for its head.
    public static func measure(config: ReplicationConfig, streams: [StreamConfig], logger: Logger) async -> [StreamLag] {
        let state = try? StateStore.open(config, readOnly: true)
        var out: [StreamLag] = []
        var source: PostgresConnection?
        let leases = (try? await state?.leases()) ?? []
        for stream in streams {
            var lag = StreamLag(name: stream.name, direction: stream.direction.rawValue, phase: "new")
            if let lease = leases.first(where: { $0.stream == stream.name }) {
                lag.owner = lease.expiresAt >= Date().timeIntervalSince1970 ? "\(lease.holder) (epoch \(lease.epoch))" : nil
            }
            if let state, let s = try? await state.stream(stream.name) {
                lag.phase = s.phase.rawValue
                if s.phase == .snapshotting, let parts = try? await state.partitions(stream.name) {
                    lag.phase = "snapshotting \(parts.filter { $0.status == .done }.count)/\(parts.count) partitions"
                }
                lag.rowsApplied = s.rowsApplied
                lag.deadLetters = s.rowsDeadLettered
                lag.lastError = s.lastError
                lag.lastErrorAt = s.lastErrorAt
                if let backlog = try? await state.spoolBacklog(stream.name) {
                    (lag.spoolSegments, lag.spoolRows, lag.spoolBytes) = backlog
                }
                lag.appliedPosition = Position.watermarkText(s.appliedPosition)
                if case .timestamp(let ts)? = s.appliedPosition?["ts"] { lag.appliedPosition = "cluster time \(ts.seconds).\(ts.increment)" }
                if stream.direction == .mongoToRedshift, let endpoint = config.mongo, s.phase == .streaming {
                    await measureMongo(&lag, applied: s.appliedPosition, endpoint: endpoint)
                }
            }
            guard stream.direction == .redshiftToMongo, let watermark = stream.watermark, let redshift = config.redshift else {
                out.append(lag)
                continue
            }
            do {
                if source == nil { source = try await PostgresConnection.connect(redshift.url, connectTimeoutSeconds: 5) }
                let sql = "SELECT max(\(SQL.identifier(watermark)))::text FROM \(SQL.qualified(schema: stream.table.schema, name: stream.table.name))"
                lag.sourceHead = try await source!.query(sql).rows.first?.first ?? nil
                if let head = lag.sourceHead.flatMap(TextValueDecoder.parseTimestampText),
                   let applied = lag.appliedPosition.flatMap(TextValueDecoder.parseTimestampText), lag.phase == "streaming" {
                    lag.lagSeconds = max(0, Double(head - applied) / 1000)
                } else if let head = lag.sourceHead, let applied = lag.appliedPosition, let h = Int64(head), let a = Int64(applied), lag.phase == "streaming" {
                    lag.lagSeconds = Double(max(0, h - a))  // integer watermarks: units behind
                }
            } catch {
                lag.probeError = "\(error)"
            }
            out.append(lag)
        }
        return out
    }

    static func measureMongo(_ lag: inout StreamLag, applied: Document?, endpoint: MongoEndpoint) async {
        do {
            let client = try MongoClient(url: endpoint.url)
            guard let now = try await ClusterClock.now(client, database: endpoint.database) else {
                lag.probeError = "the server reports no operationTime (not a replica set?)"
                return
            }
            lag.sourceHead = "cluster time \(now.seconds).\(now.increment)"
            if case .timestamp(let ts)? = applied?["ts"] {
                lag.lagSeconds = Double(max(0, Int64(now.seconds) - Int64(ts.seconds)))
                lag.resumeTokenAgeSeconds = lag.lagSeconds
            }
            if let window = await ClusterClock.oplogWindow(client) { lag.oplogWindowSeconds = window.seconds }
        } catch {
            lag.probeError = "\(error)"
        }
    }
}
