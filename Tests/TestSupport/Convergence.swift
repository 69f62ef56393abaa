import BSON
import Foundation
import MongoClient
import PostgresClient
import Replication

/// Compares a source table with its Mongo collection, every field of every document.
public enum Convergence {
    /// How a target compares with its source, key by key.
    public struct Tally: Sendable, Equatable {
        /// Live source rows compared.
        public var checked = 0
        /// Source rows the target lacks.
        public var lost = 0
        /// Keys the target holds more than once.
        public var duplicated = 0
        /// Target rows that differ from the source (an older version) or that the source deleted.
        public var regressed = 0
        public var isExact: Bool { lost == 0 && duplicated == 0 && regressed == 0 }
        public init() {}
    }

    /// Differences between the live (not soft-deleted) source rows and the Mongo documents (`_mongoshift` ignored).
    /// Empty when the target equals the source.
    public static func differences(pg: PostgresConnection, table: String, mongo: MongoClient, database: String,
                                   collection: String, deleteColumn: String? = "is_deleted", limit: Int = 10) async throws -> [String] {
        try await compare(pg: pg, table: table, mongo: mongo, database: database, collection: collection,
                          deleteColumn: deleteColumn, limit: limit).reasons
    }

    /// Compares every field of every live source row with the Mongo documents: counts and the first few reasons.
    public static func compare(pg: PostgresConnection, table: String, mongo: MongoClient, database: String,
                               collection: String, deleteColumn: String? = "is_deleted", limit: Int = 10) async throws -> (tally: Tally, reasons: [String]) {
        let filter = deleteColumn.map { " WHERE NOT \"\($0)\"" } ?? ""
        let rows = try await pg.query("SELECT * FROM public.\(table)\(filter) ORDER BY id")
        var expected: [Int64: Document] = [:]
        for row in rows.rows {
            var doc = Document()
            let id = Int64(row[0]!)!
            doc.append("_id", .int64(id))
            for (i, column) in rows.columns.enumerated() {
                guard var text = row[i] else { doc.append(column.name, .null); continue }
                let value = try text.withUTF8 { try TextValueDecoder.decode($0, type: column.typeOID, column: column.name) }
                doc.append(column.name, value)
            }
            expected[id] = doc
        }
        var actual: [Int64: Document] = [:]
        var tally = Tally()
        for doc in try await mongo.findAll(database: database, collection: collection) {
            if case .int64(let id)? = doc["_id"] {
                if actual[id] != nil { tally.duplicated += 1 }
                actual[id] = doc.removing(["_mongoshift"])
            }
        }
        var diffs: [String] = []
        tally.checked = expected.count
        for (id, doc) in expected.sorted(by: { $0.key < $1.key }) {
            guard let got = actual[id] else {
                tally.lost += 1
                if diffs.count < limit { diffs.append("missing in Mongo: \(id)") }
                continue
            }
            if got != doc {
                tally.regressed += 1
                if diffs.count < limit { diffs.append("differs \(id): source \(doc) mongo \(got)") }
            }
        }
        for id in actual.keys.sorted() where expected[id] == nil {
            tally.regressed += 1
            if diffs.count < limit { diffs.append("extra in Mongo: \(id)") }
        }
        if expected.count != actual.count { diffs.append("counts: source \(expected.count) mongo \(actual.count)") }
        if tally.duplicated > 0 { diffs.append("duplicated _ids: \(tally.duplicated)") }
        return (tally, diffs)
    }

    /// Polls until the target equals the source or `timeout` passes; returns the last differences.
    public static func wait(timeout: TimeInterval, pg: PostgresConnection, table: String, mongo: MongoClient, database: String,
                            collection: String = "orders") async throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var diffs: [String] = []
        repeat {
            diffs = try await differences(pg: pg, table: table, mongo: mongo, database: database, collection: collection)
            if diffs.isEmpty { return [] }
            try await Task.sleep(for: .milliseconds(500))
        } while Date() < deadline
        return diffs
    }
}

/// The dev servers, for tests that take one down and bring it back.
public enum DevServers {
    /// Runs an ops script and waits for it alone (posix_spawn + waitpid): the servers it daemonizes keep running,
    /// and none of this process's pipes leak into them.
    static func script(_ relative: String, _ args: [String]) throws {
        let path = (TestServers.repositoryRoot as NSString).appendingPathComponent(relative)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        var attributes = Spawn.cleanSignalAttributes()
        defer { posix_spawnattr_destroy(&attributes) }
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw NSError(domain: "DevServers", code: Int(rc)) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw NSError(domain: "DevServers \(relative)", code: Int(status)) }
    }

    public static var mongoDirectory: String? { ProcessInfo.processInfo.environment["MONGOSHIFT_TEST_MONGO_DIR"] }
    public static var postgresDirectory: String? { ProcessInfo.processInfo.environment["MONGOSHIFT_TEST_PG_DIR"] }

    public static func stopMongo() throws { try script("ops/dev-mongo/stop", [mongoDirectory!]) }
    public static func startMongo() throws {
        try script("ops/dev-mongo/start", [mongoDirectory!, ProcessInfo.processInfo.environment["MONGOSHIFT_TEST_MONGO_PORT"]!])
    }
    public static func stopPostgres(immediate: Bool = false) throws {
        try script("ops/dev-postgres/stop", [postgresDirectory!, immediate ? "immediate" : "fast"])
    }
    public static func startPostgres() throws { try script("ops/dev-postgres/start", [postgresDirectory!]) }
}

/// Spawning from a Swift concurrency (libdispatch) thread inherits its signal mask, which blocks SIGTERM: a
/// server started that way would never see SIGTERM and would be SIGKILLed before it saves. Start children
/// with an empty mask and default dispositions.
public enum Spawn {
    public static func cleanSignalAttributes() -> posix_spawnattr_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return attributes
    }
}
