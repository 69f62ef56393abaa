import BSON
import MongoClient

/// The Mongo server's own clock, for skew-free lag (docs/ARCHITECTURE.md, "Lag") and the oplog-window check.
enum ClusterClock {
    /// The server's current cluster time: `operationTime` of a cheap command (nil on a standalone).
    static func now(_ client: MongoClient, database: String) async throws -> BSONTimestamp? {
        let reply = try await client.command(["ping": 1], database: database)
        if case .timestamp(let t)? = reply["operationTime"] { return t }
        return nil
    }

    /// First to last entry of local.oplog.rs; nil when the server does not let us read it.
    static func oplogWindow(_ client: MongoClient) async -> Duration? {
        guard let oldest = await oplogEdge(client, newest: false), let newest = await oplogEdge(client, newest: true) else { return nil }
        return .seconds(Int64(newest.seconds) - Int64(oldest.seconds))
    }

    /// The `ts` of local.oplog.rs's oldest (or newest) entry; nil when the server does not let us read it.
    static func oplogEdge(_ client: MongoClient, newest: Bool) async -> BSONTimestamp? {
        let docs = try? await client.findAll(database: "local", collection: "oplog.rs", sort: ["$natural": .int32(newest ? -1 : 1)],
                                             projection: ["ts": 1], limit: 1)
        if case .timestamp(let t)? = docs?.first?["ts"] { return t }
        return nil
    }

    /// Mongo → Redshift lag: the server's cluster time now minus the applied event's cluster time (both the
    /// server's clock).
    static func lag(now: BSONTimestamp, applied: BSONTimestamp?) -> Double? {
        guard let applied else { return nil }
        return Double(max(0, Int64(now.seconds) - Int64(applied.seconds)))
    }
}
