import Changes
import Foundation
import Logging
import PostgresClient
import Replication
import StateStore

/// A Mongo → PostgreSQL applier on its own state directory, for tests that drive batches by hand: stream `apps`
/// into `<schema>.apps`, `flatten: 1`.
public struct ApplierFixture {
    public let applier: RedshiftApplier
    public let directory: String
    public let state: StateStore
    let context: StreamContext
    let url: String
    /// Each partition's last page key, so the next page continues where it stands.
    private let pageKeys = PageKeys()

    /// The test PostgreSQL server, a fresh schema named after `prefix`, and a connection of the test's own to
    /// look at the table.
    public static func onTestServer(_ prefix: String, maxAttempts: Int = 1) async throws -> (fixture: ApplierFixture, connection: PostgresConnection, schema: String) {
        let pg = try TestServers.requirePostgres()
        let connection = try await PostgresConnection.connect(pg)
        let schema = TestServers.uniqueName(prefix)
        return (try await ApplierFixture(postgres: pg, schema: schema, maxAttempts: maxAttempts), connection, schema)
    }

    public init(postgres url: String, schema: String, maxAttempts: Int = 1) async throws {
        directory = try TestServers.temporaryDirectory(schema)
        var config = ReplicationConfig()
        config.stateDirectory = directory
        var stream = StreamConfig(name: "apps", direction: .mongoToRedshift, table: TableName(schema: schema, name: "apps"),
                                  collection: "apps", defaults: config.defaults)
        stream.flatten = 1
        config.streams = [stream]
        state = try StateStore(directory: directory)
        _ = try await state.ensureStream("apps", direction: "mongo_to_redshift")
        try await Self.plan(state)
        context = try StreamContext(config: config, stream: stream, state: state, logger: Logger(label: "test"), progress: nil)
        self.url = url
        applier = try await RedshiftApplier(context: context, endpoint: RedshiftEndpoint(url: url, dialect: .postgres),
                                            policy: RetryPolicy(maxAttempts: maxAttempts))
    }

    /// A second applier on the same state and target: another worker's (a helper applying its pages).
    public func anotherWorker() async throws -> RedshiftApplier {
        try await RedshiftApplier(context: context, endpoint: RedshiftEndpoint(url: url, dialect: .postgres), policy: RetryPolicy(maxAttempts: 1))
    }

    /// A tail segment of the stream, positioned by a made-up resume token.
    public static func segment(_ seq: Int64, records: Int = 1) -> SegmentRecord {
        SegmentRecord(stream: "apps", seq: seq, kind: .tail, partition: -1, records: records, bytes: 0, firstPosition: nil,
                      lastPosition: .changeStream(ChangeStreamPosition(resumeToken: ["_data": .string("x\(seq)")])))
    }

    /// A snapshot page of partition `partition`, recorded as a copier records it: the applier applies only pages
    /// still recorded (a reset forgets the others).
    public func snapshotPage(partition: Int, records: Int = 1) async throws -> SegmentRecord {
        let seq = try await state.allocateSequence("apps")
        let first = pageKeys.take(partition, next: .columns(["p\(partition)-\(seq)"]))
        let page = SegmentRecord(stream: "apps", seq: seq, kind: .snapshot, partition: partition, records: records, bytes: 0,
                                 firstPosition: first.previous.map(StreamPosition.snapshotKey), lastPosition: .snapshotKey(first.next))
        try await state.recordSnapshotPage(page)
        return page
    }

    /// A snapshot planned and every partition claimed by this worker, for `snapshotPage`. Returns its generation.
    @discardableResult
    private static func plan(_ state: StateStore) async throws -> Int64 {
        let generation = try await state.beginSnapshot("apps", snapshotStart: .snapshotKey(.columns(["start"])), tailSeed: nil,
                                                       partitions: (0..<8).map { PartitionState(index: $0, lower: nil, upper: nil) }, lease: nil)
        while try await state.claimPartition("apps", duration: .seconds(3600)) != nil {}
        return generation
    }

    /// The stream reset and snapshotted again, as an owner does when its history is lost: earlier pages are
    /// forgotten, the next ones belong to the new generation (returned).
    public func replan() async throws -> Int64 {
        try await state.resetStream("apps", lease: nil)
        pageKeys.clear()
        return try await Self.plan(state)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// `@unchecked Sendable`: guarded by its lock.
private final class PageKeys: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [Int: SnapshotKey] = [:]

    func clear() { lock.withLock { last = [:] } }

    func take(_ partition: Int, next: SnapshotKey) -> (previous: SnapshotKey?, next: SnapshotKey) {
        lock.withLock {
            defer { last[partition] = next }
            return (last[partition], next)
        }
    }
}
