import Foundation
import Logging
import MongoClient
import ServiceLifecycle
import Spool

/// The resumable initial copy of a Mongo collection into a Redshift/PostgreSQL table (DESIGN §6).
///
/// The change stream is opened first and its resume token kept as the tail's starting point; then `_id` ranges
/// (ObjectId keyspace split by creation time, numeric ranges, or sampled boundaries) are copied by keyset
/// pages, each page a durable spool segment with the partition's last `_id`; then the tailer streams from the
/// kept token. Changes made during the copy arrive twice at most, which the applier absorbs.
struct MongoSnapshot {
    let context: StreamContext
    let client: MongoClient
    let database: String
    let applier: ChangeTarget?
    let policy: RetryPolicy

    func run(spoolOnly: Bool) async throws -> SnapshotOutcome {
        let name = context.name
        var state = try await context.state.ensureStream(name, direction: StreamConfig.Direction.mongoToRedshift.rawValue)
        if state.phase == .streaming { return .alreadyComplete(rowsApplied: state.rowsApplied) }
        try await context.recoverSpool()
        try await context.state.releaseClaims(name)
        if context.role == .helper && state.phase != .snapshotting { return .interrupted }
        var partitions = try await context.state.partitions(name)
        if (state.phase == .new || partitions.isEmpty) && context.role == .owner {
            try await plan()
            state = try await context.state.stream(name)!
            partitions = try await context.state.partitions(name)
        } else {
            context.logger.info("resuming snapshot", metadata: ["partitions_done": "\(partitions.filter { $0.status == .done }.count)/\(partitions.count)"])
        }
        let total = try await policy.run { try await client.count(database: database, collection: context.stream.collection) }
        let partitionCount = partitions.count
        let claimFor = context.config.leaseDuration * 4
        // Rounds, as in RedshiftSnapshot: claim and copy until nothing is claimable; the owner waits for the rest.
        while true {
        let counters = SnapshotCounters(rowsDone: partitions.reduce(0) { $0 + $1.rows }, partitionsDone: partitions.filter { $0.status == .done }.count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isShuttingDownGracefully, let partition = try await context.state.claimPartition(name, duration: claimFor) {
                    try await extract(partition, counters: counters, total: total, partitionCount: partitionCount)
                }
                await counters.finishExtraction()
            }
            if !spoolOnly, let applier {
                group.addTask {
                    try await SegmentApplyLoop(context: context, target: applier).runDuringSnapshot(counters: counters, policy: policy)
                }
            }
            while try await group.next() != nil {}
        }
        if try await context.snapshotRoundsOver(spoolOnly: spoolOnly) { break }
        partitions = try await context.state.partitions(name)
        }
        context.progress?.finish(stream: name)
        if Task.isShuttingDownGracefully || context.role == .helper { return .interrupted }
        if spoolOnly { return .spooled(segments: try await context.state.spoolBacklog(name).segments) }
        try await context.state.completeSnapshot(name)
        let final = try await context.state.stream(name)!
        context.logger.info("snapshot complete", metadata: ["rows_applied": "\(final.rowsApplied)", "dead_lettered": "\(final.rowsDeadLettered)"])
        return .completed(rowsCopied: final.rowsApplied)
    }

    private func plan() async throws {
        let coll = context.stream.collection
        // 1. The tail's starting point, taken before the first page is read.
        let stream = try await policy.run {
            try await client.watch(database: database, collection: coll, options: ["maxAwaitTimeMS": 100])
        }
        let opened = try await stream.nextBatch(maxEvents: 0)
        guard let token = opened.resumeToken else {
            throw ReplicationError(.configuration, stream: context.name, "the server gave no resume token (change streams need a replica set)")
        }
        let clusterTime = try await ClusterClock.now(client, database: database)
        var seed: Document = ["t": .document(token)]
        if let clusterTime { seed.append("ts", .timestamp(clusterTime)) }
        // 2. Partitions over _id.
        let bounds = try await partitionBounds()
        let partitions = bounds.enumerated().map { i, b in
            PartitionState(index: i, lower: b.0.map { ["k": $0] }, upper: b.1.map { ["k": $0] }, lastKey: nil, status: .pending, rows: 0)
        }
        try await context.state.beginSnapshot(context.name, snapshotStart: seed, tailSeed: seed, partitions: partitions)
        context.logger.info("snapshot planned", metadata: ["partitions": "\(partitions.count)"])
    }

    private func partitionBounds() async throws -> [(BSON?, BSON?)] {
        let n = max(1, context.stream.partitions)
        let coll = context.stream.collection
        func edge(_ direction: Int32) async throws -> BSON? {
            try await client.findAll(database: database, collection: coll, sort: ["_id": .int32(direction)], projection: ["_id": 1], limit: 1).first?["_id"]
        }
        guard n > 1, let lo = try await edge(1), let hi = try await edge(-1) else { return [(nil, nil)] }
        var cuts: [BSON] = []
        switch (lo, hi) {
        case (.objectId(let a), .objectId(let b)) where b.timestamp > a.timestamp:
            let span = Double(b.timestamp - a.timestamp)
            cuts = (1..<n).map { .objectId(ObjectId(timestamp: a.timestamp + UInt32(span * Double($0) / Double(n)))) }
        case _ where lo.intValue != nil && hi.intValue != nil:
            let a = lo.intValue!, b = hi.intValue!
            guard b > a else { return [(nil, nil)] }
            cuts = (1..<n).map { .int64(Int64(a + (b - a) * $0 / n)) }
        default:
            // Sampled boundaries for other _id types.
            let count = try await client.count(database: database, collection: coll)
            for i in 1..<n {
                let reply = try await client.command(["find": .string(coll), "sort": .document(["_id": 1]), "projection": .document(["_id": 1]),
                                                      "skip": .int64(Int64(count * i / n)), "limit": 1, "singleBatch": true], database: database)
                if case .array(let batch)? = reply.value(at: "cursor.firstBatch"), case .document(let d)? = batch.first, let id = d["_id"] {
                    cuts.append(id)
                }
            }
        }
        var out: [(BSON?, BSON?)] = []
        var lower: BSON? = nil
        for cut in cuts {
            out.append((lower, cut))
            lower = cut
        }
        out.append((lower, nil))
        return out
    }

    private func extract(_ partition: PartitionState, counters: SnapshotCounters, total: Int, partitionCount: Int) async throws {
        var after: BSON? = partition.lastKey?["k"] ?? partition.lower?["k"]
        let upper: BSON? = partition.upper?["k"]
        var pageDocs = 1000
        while !Task.isShuttingDownGracefully {
            try await context.waitForSpoolSpace()
            var range = Document()
            if let after { range.append("$gt", after) }
            if let upper { range.append("$lte", upper) }
            let filter: Document = range.isEmpty ? [:] : ["_id": .document(range)]
            let limit = pageDocs
            let docs = try await policy.run {
                try await client.findAll(database: database, collection: context.stream.collection, filter: filter, sort: ["_id": 1], limit: limit)
            }
            if docs.isEmpty { break }
            var writer = SpoolSegmentWriter(stream: context.name)
            for doc in docs {
                writer.append(Change(operation: .upsert, key: doc["_id"] ?? .null, document: doc))
            }
            let first: Document = after.map { ["k": $0] } ?? [:]
            let lastKey = docs.last!["_id"] ?? .null
            let last: Document = ["k": lastKey]
            try await context.spool(writer, kind: .snapshot, partition: partition.index, first: first, last: last)
            after = lastKey
            let width = max(64, writer.byteCount / docs.count)
            let done = await counters.add(rows: docs.count)
            if let progress = context.progress {
                progress.update(SnapshotProgress(stream: context.name, rowsDone: done, rowsTotal: max(total, done),
                                                 partitionsDone: await counters.partitionsDone, partitionsTotal: partitionCount,
                                                 rowsPerSecond: await counters.rate()))
            }
            if docs.count < pageDocs { break }
            pageDocs = max(100, min(50_000, context.stream.pageBytes / width))
        }
        if Task.isShuttingDownGracefully { return }
        try await context.state.markPartitionDone(context.name, index: partition.index)
        await counters.partitionDone()
    }
}
