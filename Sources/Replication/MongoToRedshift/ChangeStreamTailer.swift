import BSON
import Changes
import Foundation
import Logging
import MongoClient
import ServiceLifecycle
import Spool
import StateStore

/// Tails a collection's change stream from the durable resume token and spools the changes
/// (docs/ARCHITECTURE.md, "Mongo → Redshift").
///
/// insert/replace/update (with `fullDocument: updateLookup`) become upserts of the whole document, delete a
/// delete. A batch closes on `batch_bytes` or after `poll_interval`, whichever comes first, so a trickle reaches
/// the target within about a poll interval and a flood never holds more than a batch in memory. The tailer keeps
/// the position it last recorded (segments are recorded under the generation it started from, so a rewind stops
/// it); while the stream is idle it posts the server's postBatchResumeToken to the apply side, which persists it
/// once the spool is drained, so a quiet stream never falls off the oplog.
struct ChangeStreamTailer {
    let context: StreamContext
    let client: MongoClient
    let database: String
    let policy: RetryPolicy
    let idle: IdleAdvance
    /// Called for `drop`/`rename`/`dropDatabase`/`invalidate` with `on_drop: truncate`, after the spool drained.
    let truncateTarget: @Sendable () async throws -> Void

    func run() async throws {
        var cursor = try await context.state.extractCursor(context.name)
        let splitting = try await Self.serverSplitsLargeEvents(client, database: database)
        // After an event over 16 MiB failed a batch on a server that cannot split it: read one event per batch, so
        // the events before it are spooled and the failing one is the next after the position.
        var oneAtATime = false
        while !Task.isShuttingDownGracefully {
            do {
                // A handled drop (or the end of a one-at-a-time stretch) reopens the stream; anything else ends with shutdown.
                if try await !tail(&cursor, splitting: splitting, oneAtATime: oneAtATime) { return }
                oneAtATime = false
            } catch let error as MongoError where error.serverCode == 10334 && !splitting {
                if oneAtATime {
                    do {
                        try await skipOversizedEvent(&cursor, error: error)
                        oneAtATime = false
                    } catch let failure as MongoError where policy.retries(failure) && !failure.isHistoryLost {
                        // Still one at a time: the next round fails on the same event and skips it again.
                        context.logger.warning("reading past a change event over 16 MiB failed; trying again", metadata: ["error": "\(failure)"])
                        try await pause(.seconds(1))
                    }
                } else {
                    context.logger.warning("a change event over 16 MiB failed the batch; reading one event at a time to find it", metadata: ["error": "\(error)"])
                    oneAtATime = true
                }
            } catch let error as MongoError where policy.retries(error) && !error.isHistoryLost {
                context.logger.warning("change stream interrupted, reopening from the last recorded token", metadata: ["error": "\(error)"])
                try await pause(.seconds(1))
                // Idle tokens are persisted by the apply side, not recorded here: a quiet stream's newest one is in
                // the store. Reopening from the token this tailer started with could ask for history long gone.
                let stored = try await context.state.extractCursor(context.name)
                if stored.generation == cursor.generation { cursor = stored }
            }
        }
    }

    /// Reads until shutdown (false), or until a drop-like event was handled (true: reopen after it).
    private func tail(_ cursor: inout ExtractCursor, splitting: Bool, oneAtATime: Bool = false) async throws -> Bool {
        guard let position = cursor.position?.changeStream else {
            throw ReplicationError(.historyLost, stream: context.name, "no resume token stored for the stream")
        }
        let interval = context.stream.pollInterval
        // A getMore waits at most half a poll interval for new events, so a batch closes within about one.
        var options: Document = ["fullDocument": "updateLookup",
                                 "maxAwaitTimeMS": .int64(Int64(max(100, interval.seconds * 500)))]
        position.appendResumeOption(to: &options)
        if oneAtATime { options.append("batchSize", 1) }
        var eventsRead = 0
        // Events over 16 MiB arrive in fragments (MongoDB ≥ 7.0, 6.0.9), reassembled below.
        let pipeline: [Document] = splitting ? [["$changeStreamSplitLargeEvent": .document(Document())]] : []
        let stream = try await client.watch(database: database, collection: context.stream.collection, pipeline: pipeline, options: options)
        var last = position
        // The fragments of a split event read so far (across batches): the position stays before the event.
        var fragments: Document?
        while !Task.isShuttingDownGracefully {
            try await context.waitForSpoolSpace()
            let batch = try await stream.nextBatch(maxEvents: oneAtATime ? 1 : 100_000, maxBytes: context.stream.pageBytes, maxWait: interval)
            eventsRead += batch.events.count
            // Cancelled while the blocking read ran (a sibling failed, a rewind): write nothing more.
            try Task.checkCancellation()
            var writer = SpoolSegmentWriter(stream: context.name)
            var dropEvent: (String, Document)?
            // A rename *onto* the watched name (`renameCollection` with `dropTarget`, `$out`) brings another
            // collection's documents, none of which passed through this stream.
            var renamedOnto: String?
            var lastEventToken: Document?
            for fragment in batch.events {
                guard let event = Self.reassemble(fragment, into: &fragments) else { continue }
                let op = event["operationType"]?.stringValue ?? ""
                if case .timestamp(let t)? = event["clusterTime"] { last.clusterTime = t }
                if op == "drop" || op == "rename" || op == "dropDatabase" || op == "invalidate" {
                    if let id = event["_id"]?.documentValue { dropEvent = (op, id) }
                    if op == "rename", event.value(at: "to.db")?.stringValue == database,
                       event.value(at: "to.coll")?.stringValue == context.stream.collection {
                        renamedOnto = [event.value(at: "ns.db")?.stringValue, event.value(at: "ns.coll")?.stringValue].compactMap { $0 }.joined(separator: ".")
                    }
                    break
                }
                lastEventToken = event["_id"]?.documentValue
                let key = event.value(at: "documentKey._id") ?? .null
                let time: Int64? = { if case .datetime(let ms)? = event["wallTime"] { return ms }; return last.clusterTime.map { Int64($0.seconds) * 1000 } }()
                let version: BSON? = last.clusterTime.map(BSON.timestamp)
                switch op {
                case "insert", "replace", "update":
                    // updateLookup gives null when the document was deleted since: its delete event follows.
                    guard case .document(let full)? = event["fullDocument"] else { continue }
                    if let match = context.stream.match, !match.matches(full) {
                        // Outside `match:` (or no longer in it): it must not be, or stay, in the table.
                        writer.append(Change(operation: .delete, key: key, version: version, sourceTimeMillis: time))
                        continue
                    }
                    writer.append(Change(operation: .upsert, key: key, document: context.stream.columns.apply(full), version: version, sourceTimeMillis: time))
                case "delete":
                    writer.append(Change(operation: .delete, key: key, version: version, sourceTimeMillis: time))
                default:
                    continue
                }
            }
            // Drained batches end at the server's postBatchResumeToken; a batch cut short (a drop) at its last event.
            // Mid-way through a split event: at the last whole event (the fragments are read again after a restart).
            let token = dropEvent == nil && fragments == nil ? (batch.resumeToken ?? lastEventToken) : lastEventToken
            if let token { last.resumeToken = token }
            last.afterInvalidate = false
            // One event at a time (hunting an oversized event): every event read moves the recorded position, even
            // one that changes nothing, so the event that fails next is the one right after it.
            if writer.count > 0 || (oneAtATime && lastEventToken != nil && fragments == nil && dropEvent == nil) {
                try await record(writer, to: last, cursor: &cursor)
            } else if dropEvent == nil, let token, token != cursor.position?.changeStream?.resumeToken {
                // Idle: the token moved without changes. With the server's cluster time, for lag.
                var advanced = last
                if let now = try? await ClusterClock.now(client, database: database) { advanced.clusterTime = now }
                idle.post(.changeStream(advanced), generation: cursor.generation)
            }
            if let from = renamedOnto {
                throw ReplicationError(.sourceReplaced, stream: context.name,
                                       "collection \(from) was renamed onto source collection \(database).\(context.stream.collection) "
                                       + "(renameCollection with dropTarget, or an aggregation's $out): its documents never passed through the change stream")
            }
            if let (op, token) = dropEvent {
                try await handleDrop(op, token: token, last: last, cursor: &cursor)
                return true
            }
            // A one-at-a-time stretch that met no oversized event ends: back to full batches.
            if oneAtATime && (eventsRead >= 1_000 || batch.events.isEmpty) && fragments == nil { return true }
        }
        return false
    }

    /// A whole event: `event` itself, or — for the last fragment of a split event (`splitEvent: {fragment, of}`) —
    /// the fields of all its fragments with the last fragment's token as `_id` (resuming after it passes the
    /// whole event); nil while fragments are still missing.
    static func reassemble(_ event: Document, into fragments: inout Document?) -> Document? {
        guard case .document(let split)? = event["splitEvent"], let n = split["fragment"]?.intValue, let of = split["of"]?.intValue else {
            return event
        }
        var merged = n == 1 ? Document() : (fragments ?? Document())
        for (key, value) in event where key != "_id" && key != "splitEvent" { merged.append(key, value) }
        guard n >= of else {
            fragments = merged
            return nil
        }
        fragments = nil
        if let token = event["_id"] { merged.append("_id", token) }
        return merged
    }

    /// `$changeStreamSplitLargeEvent` exists from MongoDB 7.0 (and 6.0.9). A failed `buildInfo` throws (the
    /// tailer starts again): taken as "cannot split", an outage at start dead-lettered events this server splits.
    static func serverSplitsLargeEvents(_ client: MongoClient, database: String) async throws -> Bool {
        let info = try await client.command(["buildInfo": 1], database: database)
        guard case .array(let parts)? = info["versionArray"] else { return false }
        let v = parts.prefix(3).map { $0.intValue ?? 0 } + [0, 0, 0]
        return v[0] >= 7 || (v[0] == 6 && v[1] == 0 && v[2] >= 9)
    }

    /// The server failed the stream on an event over 16 MiB and cannot split it: read that event without its
    /// documents (key and token only) and move the position past it. The event is too large, not its document
    /// (at most 16 MiB): that is read by its key — as it is now, what `updateLookup` gives too — and written, or
    /// deleted when it is gone or outside `match:`. Only an event of another kind is dead-lettered.
    private func skipOversizedEvent(_ cursor: inout ExtractCursor, error: MongoError) async throws {
        guard let position = cursor.position?.changeStream else { throw error }
        var options: Document = ["maxAwaitTimeMS": 100]
        position.appendResumeOption(to: &options)
        let slim: [Document] = [["$project": .document(["fullDocument": 0, "updateDescription": 0, "fullDocumentBeforeChange": 0])]]
        let stream = try await client.watch(database: database, collection: context.stream.collection, pipeline: slim, options: options)
        // A reply may come back empty before the event does (a getMore's wait ends first): read up to 5 s.
        var event: Document?
        let deadline = ContinuousClock.now + .seconds(5)
        while event == nil && ContinuousClock.now < deadline {
            event = try await stream.nextBatch(maxEvents: 1, maxWait: .seconds(1)).events.first
        }
        guard let event, case .document(let token)? = event["_id"] else { throw error }
        let key = event.value(at: "documentKey._id") ?? .null
        let op = event["operationType"]?.stringValue ?? "?"
        var after = position
        after.resumeToken = token
        after.afterInvalidate = false
        if case .timestamp(let t)? = event["clusterTime"] { after.clusterTime = t }
        var writer = SpoolSegmentWriter(stream: context.name)
        let version: BSON? = after.clusterTime.map(BSON.timestamp)
        let time: Int64? = { if case .datetime(let ms)? = event["wallTime"] { return ms }; return after.clusterTime.map { Int64($0.seconds) * 1000 } }()
        switch op {
        case "insert", "replace", "update":
            func read(_ level: MongoClient.ReadConcern.Level) async throws -> [Document] {
                try await client.findAll(database: database, collection: context.stream.collection, filter: ["_id": key], limit: 1,
                                         readConcern: MongoClient.ReadConcern(level, afterClusterTime: after.clusterTime))
            }
            let found: [Document]
            do {
                found = try await read(.majority)
            } catch let refused as MongoError where refused.serverCode == MongoSnapshotSource.majorityReadsDisabled {
                found = try await read(.local)  // majority reads disabled (MongoDB before 5.0): the newest data
            }
            if let current = found.first, context.stream.match?.matches(current) ?? true {
                writer.append(Change(operation: .upsert, key: key, document: context.stream.columns.apply(current), version: version, sourceTimeMillis: time))
            } else {
                writer.append(Change(operation: .delete, key: key, version: version, sourceTimeMillis: time))
            }
            context.logger.warning("a change event over 16 MiB: its document read by key instead (this server, before 7.0, cannot split events)",
                                   metadata: ["key": "\(ExtendedJSON.relaxed(key))", "operation": "\(op)"])
        case "delete":
            writer.append(Change(operation: .delete, key: key, version: version, sourceTimeMillis: time))
        default:
            try await context.deadLetter([.init(key: key, reason: "change event over MongoDB's 16 MiB limit (\(op)); "
                                                   + "this server (before 7.0) cannot split it with $changeStreamSplitLargeEvent: \(error.message)")])
            context.logger.error("skipped a change event over 16 MiB (dead-lettered)", metadata: ["key": "\(ExtendedJSON.relaxed(key))"])
        }
        try await record(writer, to: after, cursor: &cursor)
    }

    private func record(_ writer: SpoolSegmentWriter, to last: ChangeStreamPosition, cursor: inout ExtractCursor) async throws {
        idle.clear()
        let position = StreamPosition.changeStream(last)
        try await context.spoolTail(writer, first: cursor.position, last: position, generation: cursor.generation)
        cursor.position = position
    }

    /// `on_drop`: fail; or keep / truncate the target and continue after the event (`startAfter`). The position
    /// after the event travels as an empty segment, so only the apply side moves the applied position.
    private func handleDrop(_ op: String, token: Document, last: ChangeStreamPosition, cursor: inout ExtractCursor) async throws {
        let after = ChangeStreamPosition(resumeToken: token, clusterTime: last.clusterTime, afterInvalidate: true)
        // Right after a drop handled already (the position is past it, `startAfter`): the `invalidate` (or
        // `dropDatabase`) that ends the same stream is that drop's, not a second one.
        if cursor.position?.changeStream?.afterInvalidate == true {
            try await record(SpoolSegmentWriter(stream: context.name), to: after, cursor: &cursor)
            return
        }
        let what = "source collection \(context.stream.collection): \(op) event"
        switch context.stream.onDrop {
        case .fail:
            throw ReplicationError(.sourceDropped, stream: context.name, "\(what) (on_drop: fail)")
        case .keep:
            context.logger.error("\(what); keeping the target table as it is (on_drop: keep) and watching for the collection to return")
        case .truncate:
            while try await context.state.spoolBacklog(context.name).segments > 0 {
                try await pause(.milliseconds(100))
                // The applier stops at shutdown: nothing truncated, nothing recorded — the drop event is read again
                // at the next start.
                if Task.isShuttingDownGracefully { return }
            }
            try await truncateTarget()
            context.logger.error("\(what); target table truncated (on_drop: truncate)")
        }
        try await context.state.recordError(context.name, "\(what) (on_drop: \(context.stream.onDrop.rawValue))")
        try await record(SpoolSegmentWriter(stream: context.name), to: after, cursor: &cursor)
    }
}

extension ChangeStreamPosition {
    /// Where a change stream opened at this position starts: after the token (`startAfter` past an invalidate,
    /// else `resumeAfter`), or at the start time of a position that has none yet (`startAtOperationTime`).
    func appendResumeOption(to options: inout Document) {
        if let time = startTime {
            options.append("startAtOperationTime", .timestamp(time))
        } else {
            options.append(afterInvalidate ? "startAfter" : "resumeAfter", .document(resumeToken))
        }
    }

    var watchOptions: Document {
        var options: Document = ["maxAwaitTimeMS": 100]
        appendResumeOption(to: &options)
        return options
    }
}
