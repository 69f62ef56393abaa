import BSON
import Synchronization
import Changes
import MongoClient
import Spool
import StateStore

/// A Mongo collection as a snapshot source (docs/ARCHITECTURE.md, "Snapshot"): the change stream is opened first
/// and its resume token kept as the tail's starting point; then `_id` ranges are copied by keyset pages. MongoDB
/// compares `_id`s within one type bracket only (`TypeBracket`), so partitions never span brackets and pages
/// walk one bracket at a time: ranges inside a bracket are cut arithmetically (numbers, dates: 128-bit
/// arithmetic, no overflow whatever the values; ObjectIds: by creation time) or at sampled `_id`s. Changes made
/// during the copy arrive twice at most, which the applier absorbs.
struct MongoSnapshotSource: SnapshotSource {
    let context: StreamContext
    let client: MongoClient
    let database: String
    let policy: RetryPolicy
    /// Set once the server refused majority reads (148): every partition's pages read local data from then on.
    private let majorityRefused = MajorityRefusal()

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
        // 2. Partitions over _id; `_id`s no bracket pages are reported, never skipped silently.
        let bounds = try await partitionBounds()
        try await reportUnpageableIDs()
        return SnapshotPlan(start: seed, tailSeed: seed, bounds: bounds.map { (lower: $0.0, upper: $0.1) })
    }

    func confirmTailStart(_ start: StreamPosition) async throws {
        try await TailStartWatch(context: context, client: client, database: database).confirm(start)
    }

    /// JavaScript code (with or without scope) and DBPointers are valid `_id`s that no `TypeBracket` walks:
    /// counted and reported (log and one dead letter), as rows without a key are on the Redshift side.
    private func reportUnpageableIDs() async throws {
        let filter: Document = ["_id": .document(["$type": .array(TypeBracket.unpageableTypeAliases.map(BSON.string))])]
        let count = try await client.count(database: database, collection: collection, filter: filter)
        guard count > 0 else { return }
        context.logger.error("documents with an _id of a type no snapshot range can page are not copied",
                             metadata: ["documents": "\(count)", "types": "\(TypeBracket.unpageableTypeAliases)"])
        try await context.deadLetter([.init(key: .null, reason: "\(count) documents have an _id of a type no snapshot range can page "
                                                  + "(JavaScript code, DBPointer) and are not copied; they follow once they change")])
    }

    /// The brackets present in the collection and, when there are several, how many `_id`s each holds.
    private func brackets() async throws -> [(bracket: TypeBracket, count: Int)] {
        var present: [TypeBracket] = []
        for bracket in TypeBracket.allCases where try await edge(bracket, ascending: true) != nil { present.append(bracket) }
        if present.count == 1 { return [(present[0], 1)] }
        var out: [(TypeBracket, Int)] = []
        for bracket in present {
            out.append((bracket, try await client.count(database: database, collection: collection, filter: bracket.filter(after: nil, upTo: nil))))
        }
        return out
    }

    private func edge(_ bracket: TypeBracket, ascending: Bool) async throws -> BSON? {
        try await client.findAll(database: database, collection: collection, filter: bracket.filter(after: nil, upTo: nil),
                                 sort: ["_id": .int32(ascending ? 1 : -1)], projection: ["_id": 1], limit: 1).first?["_id"]
    }

    /// Partitions per bracket in proportion to its `_id`s (at least one each), each bracket's first partition
    /// starting at the bracket's edge and its last ending at the other edge.
    private func partitionBounds() async throws -> [(SnapshotKey, SnapshotKey)] {
        let n = max(1, context.stream.partitions)
        let present = try await brackets()
        let total = max(1, present.reduce(0) { $0 + $1.count })
        var out: [(SnapshotKey, SnapshotKey)] = []
        for (bracket, count) in present {
            let share = max(1, Int((Double(n) * Double(count) / Double(total)).rounded()))
            let cuts = share > 1 ? try await cuts(in: bracket, parts: share) : []
            var lower = SnapshotKey.typeBracket(bracket.name)
            for cut in cuts {
                out.append((lower, .documentID(cut)))
                lower = .documentID(cut)
            }
            out.append((lower, .typeBracket(bracket.name)))
        }
        return out
    }

    /// Up to `parts - 1` increasing `_id`s strictly inside the bracket's range, where its `_id`s split it.
    private func cuts(in bracket: TypeBracket, parts: Int) async throws -> [BSON] {
        guard let lo = try await edge(bracket, ascending: true), let hi = try await edge(bracket, ascending: false) else { return [] }
        var cuts: [BSON] = []
        switch (lo, hi) {
        case (.objectId(let a), .objectId(let b)) where b.timestamp > a.timestamp:
            cuts = KeySpace.cuts(from: Int128(a.timestamp), to: Int128(b.timestamp), parts: parts)
                .map { .objectId(ObjectId(timestamp: UInt32($0))) }
        case (.datetime(let a), .datetime(let b)):
            cuts = KeySpace.cuts(from: Int128(a), to: Int128(b), parts: parts).map { .datetime(Int64($0)) }
        case _ where lo.int64Value != nil && hi.int64Value != nil:
            cuts = KeySpace.cuts(from: Int128(lo.int64Value!), to: Int128(hi.int64Value!), parts: parts).map { .int64(Int64($0)) }
        default:
            // Other types (and mixed or fractional numbers): sampled boundaries inside the bracket.
            let count = try await client.count(database: database, collection: collection, filter: bracket.filter(after: nil, upTo: nil))
            for i in 1..<parts {
                let reply = try await client.command([
                    "find": .string(collection), "filter": .document(bracket.filter(after: nil, upTo: nil)),
                    "sort": .document(["_id": 1]), "projection": .document(["_id": 1]),
                    "skip": .int64(Int64(count * i / parts)), "limit": 1, "singleBatch": true,
                ], database: database)
                if case .array(let batch)? = reply.value(at: "cursor.firstBatch"), case .document(let d)? = batch.first, let id = d["_id"] {
                    cuts.append(id)
                }
            }
        }
        // Strictly inside [lo, hi) and increasing: an empty or repeated range would copy nothing or twice.
        var out: [BSON] = []
        for cut in cuts where cut != hi && out.last != cut { out.append(cut) }
        return out
    }

    /// ReadConcernMajorityNotEnabled: a MongoDB before 5.0 started with `enableMajorityReadConcern: false`.
    static let majorityReadsDisabled = 148

    /// Walks the partition's brackets in MongoDB's order (a partition planned before brackets existed spans all
    /// of them), page by page: `{_id: {$type: bracket, $gt: last, $lte: upper}}` sorted by `_id`.
    func copy(_ partition: PartitionState, copier: Int, into pages: SnapshotPages) async throws {
        let first = TypeBracket(of: partition.lower) ?? .minKey
        let last = TypeBracket(of: partition.upper) ?? .maxKey
        var previous: SnapshotKey? = partition.lastKey ?? partition.lower
        var after: BSON? = previous?.documentID
        var sizer = BatchSizer(context.stream)
        // Majority: a write a failover rolls back never reaches the change stream, so a page must not copy it either
        // (the target would keep it for good). After the tail's start: a node elected since may begin with an older
        // majority view, and a write before the start, missed by the page, would be missed by the tail too.
        let start = try await context.state.stream(context.name)?.snapshotStart?.changeStream?.clusterTime
        var readConcern = MongoClient.ReadConcern(majorityRefused.value ? .local : .majority, afterClusterTime: start)
        for bracket in TypeBracket.allCases where bracket >= max(first, after.flatMap(TypeBracket.init(of:)) ?? first) && bracket <= last {
            let upper = bracket == last ? partition.upper?.documentID : nil
            var afterHere = after.flatMap { TypeBracket(of: $0) == bracket ? $0 : nil }
            while !Task.isShuttingDownGracefully {
                // Between pages, where a crash would stop too: the tail-start watch cancels a copy it knows futile.
                try Task.checkCancellation()
                try await pages.waitForSpace()
                let range = bracket.filter(after: afterHere, upTo: upper)
                let filter: Document = context.stream.match.map { ["$and": .array([.document(range), .document($0.document)])] } ?? range
                // Rows learned from earlier pages, bytes checked as documents arrive: a page of documents far wider
                // than the sizer has seen (the first page, or after a restart) still ends at the page size.
                let limit = sizer.rows
                let page = MongoSnapshotPage(stream: context.name, columns: context.stream.columns, maxBytes: sizer.targetBytes)
                let concern = readConcern
                do {
                    try await policy.run {
                        page.reset()
                        try await client.find(database: database, collection: collection, filter: filter, sort: ["_id": 1], limit: limit,
                                              readConcern: concern) { doc in
                            page.append(doc)
                        }
                    }
                } catch let error as MongoError where error.serverCode == Self.majorityReadsDisabled && readConcern.level == .majority {
                    context.logger.warning("the server does not serve majority reads (enableMajorityReadConcern: false, MongoDB before 5.0): snapshot pages read its newest data, and a write a failover rolls back may be copied",
                                           metadata: ["error": "\(error.message)"])
                    majorityRefused.value = true
                    readConcern = MongoClient.ReadConcern(.local, afterClusterTime: start)
                    continue
                }
                guard let lastKey = page.lastKey else { break }
                try await pages.spool(page.writer, partition: partition.index, first: previous, last: .documentID(lastKey))
                previous = .documentID(lastKey)
                afterHere = lastKey
                after = lastKey
                sizer.observe(rows: page.rows, bytes: page.writer.byteCount)
                if page.rows < limit && !page.isFull { break }
            }
            if Task.isShuttingDownGracefully { return }
        }
    }
}

/// One snapshot page being read: documents become spool records as the cursor yields them, and the page ends
/// once it holds `maxBytes` (memory is the page, never `limit` documents of unknown size).
///
/// `@unchecked Sendable`: filled on the client's thread inside one `find`, read after it returns.
final class MongoSnapshotPage: @unchecked Sendable {
    private let stream: String
    private let columns: FieldMapping
    private let maxBytes: Int
    private(set) var writer: SpoolSegmentWriter
    private(set) var rows = 0
    private(set) var lastKey: BSON?

    init(stream: String, columns: FieldMapping, maxBytes: Int) {
        self.stream = stream
        self.columns = columns
        self.maxBytes = maxBytes
        writer = SpoolSegmentWriter(stream: stream)
    }

    var isFull: Bool { writer.byteCount >= maxBytes }

    /// A retried read starts the page again.
    func reset() {
        writer = SpoolSegmentWriter(stream: stream)
        rows = 0
        lastKey = nil
    }

    /// Adds one document; false once the page is full.
    func append(_ doc: Document) -> Bool {
        let key = doc["_id"] ?? .null
        writer.append(Change(operation: .upsert, key: key, document: columns.apply(doc)))
        rows += 1
        lastKey = key
        return !isFull
    }
}

/// Whether the server refused majority reads, shared by a snapshot's copies (each warns no more once it is known).
final class MajorityRefusal: Sendable {
    private let refused = Mutex(false)
    var value: Bool {
        get { refused.withLock { $0 } }
        set { refused.withLock { $0 = newValue } }
    }
}
