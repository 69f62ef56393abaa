import BSON
import Changes
import Foundation
import Logging
import MongoClient
import PostgresClient
import StateStore

/// Where `mongoshift reset --to …` moves a stream (docs/CONFIG.md, "Resume points").
public enum ResetTarget: Sendable, Equatable, CustomStringConvertible {
    /// Forget every position: the next run snapshots again.
    case snapshot
    /// Tail from the source's present (Mongo: the current change-stream position; Redshift: the bound a poll
    /// would use now, `now() - safety_lag`).
    case now
    /// Mongo: tail from this cluster time (the oplog must still hold it).
    case time(BSONTimestamp)
    /// Mongo: tail after this resume token.
    case token(Document)
    /// Redshift: tail rows whose watermark is above this value (source text).
    case watermark(String)

    /// `snapshot`, `now`, `time:2026-12-04T10:00:00Z`, `token:{"_data":"82…"}` (or the bare hex), `watermark:<value>`.
    public init?(parsing text: String) {
        switch text {
        case "snapshot": self = .snapshot
        case "now": self = .now
        default:
            guard let colon = text.firstIndex(of: ":") else { return nil }
            let kind = text[..<colon], value = String(text[text.index(after: colon)...])
            switch kind {
            case "time":
                guard let seconds = Self.parseISO8601(value) else { return nil }
                self = .time(BSONTimestamp(seconds: seconds, increment: 0))
            case "token":
                if value.hasPrefix("{") {
                    guard case .document(let token)? = try? JSONToBSON.parse(value), token["_data"] != nil else { return nil }
                    self = .token(token)
                } else {
                    guard !value.isEmpty, value.allSatisfy(\.isHexDigit) else { return nil }
                    self = .token(["_data": .string(value)])
                }
            case "watermark":
                guard !value.isEmpty else { return nil }
                self = .watermark(value)
            default:
                return nil
            }
        }
    }

    public var description: String {
        switch self {
        case .snapshot: "snapshot"
        case .now: "now"
        case .time(let t): "time:\(ISODate.format(seconds: Int64(t.seconds)))"
        case .token(let t): "token:\(ExtendedJSON.relaxed(t))"
        case .watermark(let w): "watermark:\(w)"
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` → seconds since the epoch (UTC), within BSON timestamps' range.
    static func parseISO8601(_ text: String) -> UInt32? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var date = formatter.date(from: text)
        if date == nil {
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            date = formatter.date(from: text)
        }
        guard let seconds = date?.timeIntervalSince1970, seconds >= 0, seconds < Double(UInt32.max) else { return nil }
        return UInt32(seconds)
    }
}

/// `mongoshift reset`: resolves a target to a position at the source, then moves the stream there under its lease
/// (a running worker holds the lease, so a reset never races one). Changes nothing else.
public enum StreamReset {
    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Before a Redshift → Mongo stream snapshots again, the snapshot becomes the authority on every document:
    /// its tombstones go, and every document's version is lowered to "unversioned", so rows whose versions went
    /// backwards (a table restored from a backup, un-deleted rows, another watermark column) are copied like any
    /// other instead of meeting the version guard as stale. Nothing else writes the collection meanwhile (the reset
    /// holds the lease; the tail starts after the snapshot).
    public static func forgetVersions(stream: StreamConfig, config: ReplicationConfig) async throws {
        guard stream.direction == .redshiftToMongo, let mongo = config.mongo else { return }
        let client = try await MongoClient.connect(url: mongo.url)
        try await Tombstones(client: client, database: mongo.database, collection: stream.collection).purge(recordedBefore: .distantFuture)
        let versioned: Document = ["_mongoshift.v": .document(["$type": "number", "$ne": .int64(RowVersion.unversioned)])]
        let lowered: Document = ["$set": .document(["_mongoshift.v": .int64(RowVersion.unversioned)])]
        let reply = try await client.command(["update": .string(stream.collection),
                                              "updates": .array([.document(["q": .document(versioned), "u": .document(lowered), "multi": true])])],
                                             database: mongo.database)
        if case .array(let errors)? = reply["writeErrors"], let first = errors.first?.documentValue {
            throw MongoError(code: .server, serverCode: first["code"]?.intValue ?? 0, message: "lowering versions: \(first["errmsg"]?.stringValue ?? "")")
        }
    }

    /// The position `target` means for `stream` now; nil for `.snapshot`. Throws `Refusal` for a target the
    /// stream's direction does not take, or that the source refuses (history gone, a value it cannot compare).
    public static func resolve(_ target: ResetTarget, stream: StreamConfig, config: ReplicationConfig, logger: Logger) async throws -> StreamPosition? {
        switch (stream.direction, target) {
        case (_, .snapshot):
            return nil
        case (.mongoToRedshift, .now), (.mongoToRedshift, .time), (.mongoToRedshift, .token):
            guard let mongo = config.mongo else { throw Refusal(description: "no `mongo:` section in the configuration") }
            return try await changeStreamPosition(target, stream: stream, mongo: mongo)
        case (.redshiftToMongo, .now), (.redshiftToMongo, .watermark):
            guard let redshift = config.redshift else { throw Refusal(description: "no `redshift:` section in the configuration") }
            return try await watermarkPosition(target, stream: stream, redshift: redshift, logger: logger)
        case (.mongoToRedshift, .watermark):
            throw Refusal(description: "stream \(stream.name) reads a change stream: reset it to now, time:<ISO-8601> or token:<resume token>")
        case (.redshiftToMongo, .time), (.redshiftToMongo, .token):
            throw Refusal(description: "stream \(stream.name) polls a watermark: reset it to now or watermark:<value>")
        }
    }

    /// The target as a change-stream position, checked by opening a change stream there (MongoDB refuses a time
    /// or token the oplog no longer holds, error 286). A time (and `now`: the server's current cluster time) is
    /// kept as a start time with no token yet: the tailer opens at it (`startAtOperationTime`, inclusive) and the
    /// first event or idle advance records a real token.
    static func changeStreamPosition(_ target: ResetTarget, stream: StreamConfig, mongo: MongoEndpoint) async throws -> StreamPosition {
        let client = try await MongoClient.connect(url: mongo.url)
        let position: ChangeStreamPosition
        switch target {
        case .time(let t):
            position = ChangeStreamPosition(startingAt: t)
        case .token(let token):
            position = ChangeStreamPosition(resumeToken: token)
        default:
            guard let now = try await ClusterClock.now(client, database: mongo.database) else {
                throw Refusal(description: "stream \(stream.name): the server reports no cluster time (change streams need a replica set)")
            }
            position = ChangeStreamPosition(startingAt: now)
        }
        do {
            let changes = try await client.watch(database: mongo.database, collection: stream.collection, options: position.watchOptions)
            _ = try await changes.nextBatch(maxEvents: 0)
        } catch let error as MongoError where error.isHistoryLost {
            throw Refusal(description: "stream \(stream.name): the oplog no longer holds \(target) (\(error))")
        }
        return .changeStream(position)
    }

    static func watermarkPosition(_ target: ResetTarget, stream: StreamConfig, redshift: RedshiftEndpoint, logger: Logger) async throws -> StreamPosition {
        let pg = try await PostgresConnection.connect(redshift.url, connectTimeoutSeconds: 10)
        let table = try await SourceTable.describe(pg, stream: stream, dialect: redshift.dialect)
        guard let kind = table.watermarkKind, let column = table.watermarkName else {
            throw Refusal(description: "stream \(stream.name) has no watermark column to reset")
        }
        switch target {
        case .watermark(let value):
            // The source says whether the value compares with the column (and in which form it reads it back).
            do {
                let cast = try await pg.query("SELECT CAST(CAST($1 AS \(kind.castType)) AS varchar)", [value]).rows.first?.first ?? nil
                _ = try await pg.query("SELECT 1 FROM \(table.qualifiedName) WHERE \(SQL.identifier(column)) > CAST($1 AS \(kind.castType)) LIMIT 1", [value])
                let normal = (cast ?? nil).flatMap(kind.value(of:)).map(kind.boundText) ?? cast ?? value
                return .watermark(WatermarkPosition(value: normal))
            } catch let error as PostgresError {
                throw Refusal(description: "stream \(stream.name): watermark \"\(value)\" is not a value of \(column) (\(error.message))")
            }
        default:
            let horizon = try await TransactionHorizon.probe(pg, dialect: redshift.dialect, table: stream.table,
                                                             maxOf: kind == .integer ? column : nil,
                                                             zone: StampZone(kind: kind, configured: redshift.timeZone))
            if let writer = horizon.oldestWriter, writer.isPrepared {
                throw Refusal(description: "stream \(stream.name): \(writer) writes \(stream.table) and its rows' stamps are unknown: "
                                           + "COMMIT PREPARED or ROLLBACK PREPARED it, then reset")
            }
            let seed = try await RedshiftSnapshotSource.tailSeed(horizon, table: table, dialect: redshift.dialect, safetyLag: stream.safetyLag, logger: logger) {
                try await pg.query($0).rows.first?.first ?? nil
            }
            return .watermark(WatermarkPosition(value: seed ?? "0"))
        }
    }
}
