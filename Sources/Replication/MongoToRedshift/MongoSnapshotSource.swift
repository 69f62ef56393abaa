import BSON
import Changes
import MongoClient
import Spool
import StateStore

/// A Mongo collection as a snapshot source (docs/ARCHITECTURE.md, "Snapshot"): the change stream is opened first
/// and its resume token kept as the tail's starting point; then `_id` ranges (ObjectId keyspace split by creation
/// time, numeric ranges, or sampled boundaries) are copied by keyset pages. Changes made during the copy arrive
/// twice at most, which the applier absorbs.
struct MongoSnapshotSource: SnapshotSource {
    let context: StreamContext
    let client: MongoClient
    let database: String
    let policy: RetryPolicy

    var copiers: Int { 1 }
    private var collection: String { context.stream.collection }

    func estimatedRows() async throws -> Int {
        try await policy.run { try await client.count(database: database, collection: collection) }
    }

    func plan() async throws -> SnapshotPlan {
        // 1. The tail's starting point, taken before the first page is read.
        let stream = try await policy.run {
            try await client.watch(database: database, collection: collection, options: ["maxAwaitTimeMS": 100])
        }
        let opened = try await stream.nextBatch(maxEvents: 0)
        guard let token = opened.resumeToken else {
            throw ReplicationError(.configuration, stream: context.name, "the server gave no resume token (change streams need a replica set)")
        }
        let clusterTime = try await ClusterClock.now(client, database: database)
        let seed = StreamPosition.changeStream(ChangeStreamPosition(resumeToken: token, clusterTime: clusterTime))
        // 2. Partitions over _id.
        let bounds = try await partitionBounds()
        return SnapshotPlan(start: seed, tailSeed: seed,
                            bounds: bounds.map { (lower: $0.0.map(SnapshotKey.documentID), upper: $0.1.map(SnapshotKey.documentID)) })
    }

    private func partitionBounds() async throws -> [(BSON?, BSON?)] {
        let n = max(1, context.stream.partitions)
        func edge(_ direction: Int32) async throws -> BSON? {
            try await client.findAll(database: database, collection: collection, sort: ["_id": .int32(direction)], projection: ["_id": 1], limit: 1).first?["_id"]
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
            let count = try await client.count(database: database, collection: collection)
            for i in 1..<n {
                let reply = try await client.command(["find": .string(collection), "sort": .document(["_id": 1]), "projection": .document(["_id": 1]),
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

    func copy(_ partition: PartitionState, copier: Int, into pages: SnapshotPages) async throws {
        var after: BSON? = partition.lastKey?.documentID ?? partition.lower?.documentID
        let upper: BSON? = partition.upper?.documentID
        var sizer = BatchSizer(context.stream)
        while !Task.isShuttingDownGracefully {
            try await pages.waitForSpace()
            var range = Document()
            if let after { range.append("$gt", after) }
            if let upper { range.append("$lte", upper) }
            let filter: Document = range.isEmpty ? [:] : ["_id": .document(range)]
            let limit = sizer.rows
            let docs = try await policy.run {
                try await client.findAll(database: database, collection: collection, filter: filter, sort: ["_id": 1], limit: limit)
            }
            if docs.isEmpty { return }
            var writer = SpoolSegmentWriter(stream: context.name)
            for doc in docs {
                writer.append(Change(operation: .upsert, key: doc["_id"] ?? .null, document: doc))
            }
            let lastKey = docs.last!["_id"] ?? .null
            try await pages.spool(writer, partition: partition.index, first: after.map(SnapshotKey.documentID), last: .documentID(lastKey))
            after = lastKey
            sizer.observe(rows: docs.count, bytes: writer.byteCount)
            if docs.count < limit { return }
        }
    }
}
