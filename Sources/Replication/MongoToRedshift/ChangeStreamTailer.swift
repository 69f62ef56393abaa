import Foundation
import Logging
import MongoClient
import ServiceLifecycle
import Spool

/// Tails a collection's change stream from the durable resume token and spools the changes (DESIGN §6).
///
/// insert/replace/update (with `fullDocument: updateLookup`) become upserts of the whole document, delete a
/// delete. Each batch's postBatchResumeToken is the segment's position; when the stream is idle and the spool is
/// drained, the token is persisted anyway, so a quiet stream never falls off the oplog.
struct ChangeStreamTailer {
    let context: StreamContext
    let client: MongoClient
    let database: String
    let policy: RetryPolicy
    /// Called for `drop`/`rename`/`dropDatabase`/`invalidate` with `on_drop: truncate`, after the spool drained.
    let truncateTarget: @Sendable () async throws -> Void

    enum Stop: Error {
        /// The collection was dropped or renamed (`on_drop: keep` or `truncate` handled): reopen after the event.
        case reopen(after: Document)
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                try await tail()
                return
            } catch Stop.reopen(let token) {
                try await context.state.setAppliedPosition(context.name, ["t": .document(token), "after_invalidate": true], alsoExtract: true)
            } catch let error as MongoError where error.isTransient && !error.isHistoryLost {
                context.logger.warning("change stream interrupted, reopening from the durable token", metadata: ["error": "\(error)"])
                try await pause(.seconds(1))
            }
        }
    }

    private func tail() async throws {
        guard let position = try await context.state.stream(context.name)?.extractPosition, case .document(let token)? = position["t"] else {
            throw ReplicationError(.historyLost, stream: context.name, "no resume token stored for the stream")
        }
        var options: Document = ["fullDocument": "updateLookup",
                                 "maxAwaitTimeMS": .int64(Int64(max(100, context.stream.pollInterval.seconds * 1000)))]
        options.append(position["after_invalidate"] == .bool(true) ? "startAfter" : "resumeAfter", .document(token))
        let stream = try await client.watch(database: database, collection: context.stream.collection, options: options)
        var lastToken = token
        var lastClusterTime: BSONTimestamp? = { if case .timestamp(let t)? = position["ts"] { return t }; return nil }()
        while !Task.isShuttingDownGracefully {
            try await context.waitForSpoolSpace()
            let batch = try await stream.nextBatch(maxEvents: 5_000)
            var writer = SpoolSegmentWriter(stream: context.name)
            var dropEvent: (String, Document)?
            for event in batch.events {
                let op = event["operationType"]?.stringValue ?? ""
                if case .timestamp(let t)? = event["clusterTime"] { lastClusterTime = t }
                let key = event.value(at: "documentKey._id") ?? .null
                let time: Int64? = { if case .datetime(let ms)? = event["wallTime"] { return ms }; return lastClusterTime.map { Int64($0.seconds) * 1000 } }()
                let version: BSON? = lastClusterTime.map(BSON.timestamp)
                switch op {
                case "insert", "replace", "update":
                    // updateLookup gives null when the document was deleted since: its delete event follows.
                    guard case .document(let full)? = event["fullDocument"] else { continue }
                    writer.append(Change(operation: .upsert, key: key, document: full, version: version, sourceTimeMillis: time))
                case "delete":
                    writer.append(Change(operation: .delete, key: key, version: version, sourceTimeMillis: time))
                case "drop", "rename", "dropDatabase", "invalidate":
                    if dropEvent == nil, let id = event["_id"]?.documentValue { dropEvent = (op, id) }
                default:
                    continue
                }
                if dropEvent != nil { break }
            }
            let newToken = dropEvent?.1 ?? batch.resumeToken ?? batch.events.last?["_id"]?.documentValue ?? lastToken
            var last: Document = ["t": .document(newToken)]
            if let lastClusterTime { last.append("ts", .timestamp(lastClusterTime)) }
            if writer.count > 0 {
                let first: Document = ["t": .document(lastToken)]
                try await context.spool(writer, kind: .tail, partition: -1, first: first, last: last)
            } else if newToken != lastToken, try await context.state.spoolBacklog(context.name).segments == 0 {
                // Idle: persist the advancing token (and the server's cluster time, for lag) so it never ages out.
                var idle: Document = ["t": .document(newToken)]
                if let now = try? await ClusterClock.now(client, database: database) { idle.append("ts", .timestamp(now)); lastClusterTime = now }
                try await context.state.setAppliedPosition(context.name, idle, alsoExtract: true)
            }
            lastToken = newToken
            if let (op, token) = dropEvent {
                try await handleDrop(op, token: token)
            }
        }
    }

    private func handleDrop(_ op: String, token: Document) async throws {
        let what = "source collection \(context.stream.collection): \(op) event"
        switch context.stream.onDrop {
        case .fail:
            throw ReplicationError(.sourceDropped, stream: context.name, "\(what) (on_drop: fail)")
        case .keep:
            context.logger.error("\(what); keeping the target table as it is (on_drop: keep) and watching for the collection to return")
        case .truncate:
            while try await context.state.spoolBacklog(context.name).segments > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            try await truncateTarget()
            context.logger.error("\(what); target table truncated (on_drop: truncate)")
        }
        try await context.state.recordError(context.name, "\(what) (on_drop: \(context.stream.onDrop.rawValue))")
        throw Stop.reopen(after: token)
    }

}
