import Foundation
import MongoClient
import PostgresClient
import XCTest

/// The life every integration suite shares, written once: the dev servers (skipping with the reason when they are
/// not configured), a unique table name, Mongo database and temporary directory per test, `mongoshift`
/// processes started by the test, and a teardown that kills them and removes everything the test created.
open class IntegrationTestCase: XCTestCase {
    public var pg = ""
    public var mongoURL = ""
    /// Unique per test: a table (and schema) name, a Mongo database, a directory.
    public var table = ""
    public var database = ""
    public var directory = ""
    public var connection: PostgresConnection!
    public var mongo: MongoClient!
    /// `mongoshift` processes of this test: SIGKILLed at teardown if still running.
    public var running: [Process] = []
    private var cleanups: [() async -> Void] = []

    /// Prefix of the unique names (a table name must start with a letter).
    open var namePrefix: String { "t" }

    /// The state directory configs written by `Fixtures` use.
    public var state: String { directory + "/state" }

    open override func setUp() async throws {
        pg = try TestServers.requirePostgres()
        mongoURL = try TestServers.requireMongo()
        table = TestServers.uniqueName(namePrefix)
        database = TestServers.uniqueName(namePrefix)
        directory = try TestServers.temporaryDirectory(namePrefix)
        connection = try await PostgresConnection.connect(pg)
        mongo = try MongoClient(url: mongoURL)
    }

    open override func tearDown() async throws {
        for p in running where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitPolling()
        }
        for cleanup in cleanups.reversed() { await cleanup() }
        cleanups = []
        _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(SQL.identifier(table))")
        _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(SQL.identifier(table)) CASCADE")
        _ = try? await mongo?.command(["dropDatabase": 1], database: database)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `cleanup` at teardown (after processes are killed; last registered, first run).
    public func onTeardown(_ cleanup: @escaping () async -> Void) {
        cleanups.append(cleanup)
    }

    /// Starts `mongoshift ARGS` in the background; its log tail is printed at teardown.
    @discardableResult
    public func start(_ arguments: [String], environment: [String: String] = [:], logLines: Int = 15) throws -> (Process, String) {
        let (process, base) = try MongoshiftProcess.start(arguments, environment: environment)
        running.append(process)
        addTeardownBlock {
            print("\(arguments.first ?? "mongoshift") log tail:\n" + MongoshiftProcess.output(base).stderr.split(separator: "\n").suffix(logLines).joined(separator: "\n"))
        }
        return (process, base)
    }

    /// `mongoshift run --config CONFIG` in the background.
    @discardableResult
    public func startRun(_ config: String, arguments: [String] = [], environment: [String: String] = [:]) throws -> (Process, String) {
        try start(["run", "--config", config] + arguments, environment: environment)
    }

    /// SIGTERM, then the documented clean exit: status 0 within `within` seconds.
    public func stop(_ process: Process, within: TimeInterval = 15, file: StaticString = #filePath, line: UInt = #line) {
        let started = Date()
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling(timeout: within + 5)
        XCTAssertFalse(process.isRunning, "mongoshift must exit after SIGTERM", file: file, line: line)
        XCTAssertEqual(process.terminationStatus, 0, "SIGTERM → exit 0", file: file, line: line)
        XCTAssertLessThan(Date().timeIntervalSince(started), within, file: file, line: line)
    }

    /// Polls `condition` until it holds; fails the test (and stops it) on timeout.
    public func waitFor(_ what: String, timeout: TimeInterval = 120, file: StaticString = #filePath, line: UInt = #line,
                        _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTFail("timed out waiting for \(what)", file: file, line: line)
        throw XCTSkip("gave up waiting for \(what)")
    }

    /// A second Mongo dev server whose change history ("oplog") holds only `history` events: for lost-history
    /// scenarios. Killed at teardown. Returns its URL once it answers.
    public func startSmallHistoryMongo(history: Int) async throws -> String {
        try await startPrivateMongo(history: history).url
    }

    /// A Mongo dev server of this test's own (it may be frozen, stopped, or given a short history). Killed at
    /// teardown. Returns its URL, once it answers, and its process id.
    public func startPrivateMongo(history: Int = 1_000_000, arguments: [String] = []) async throws -> (url: String, pid: pid_t) {
        // Port 0: the server binds a port the kernel knows is free and prints its URL — a port picked here could
        // be taken meanwhile (a random one in the ephemeral range was, by a client's socket, in CI).
        let python = TestServers.repositoryRoot + "/.venv-mongo/bin/python"
        let script = TestServers.repositoryRoot + "/ops/dev-mongo/server.py"
        let output = directory + "/private-mongo-\(UUID().uuidString.prefix(8)).out"
        let words = [python, script, "--port", "0", "--replset", "rs0", "--history", String(history)] + arguments
        var argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = Spawn.cleanSignalAttributes()
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, python, &actions, &attributes, argv, environ)
        posix_spawnattr_destroy(&attributes)
        posix_spawn_file_actions_destroy(&actions)
        guard rc == 0 else { throw NSError(domain: "private mongo", code: Int(rc)) }
        var exited = false
        onTeardown { if !exited { kill(pid, SIGCONT); kill(pid, SIGKILL); var status: Int32 = 0; waitpid(pid, &status, 0) } }
        var url = ""
        try await waitFor("the private Mongo server to print its URL", timeout: 60) {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ready ") }) {
                url = String(line.dropFirst("ready ".count))
                return true
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                throw NSError(domain: "private mongo exited before it was ready (status \(status)): \(text)", code: 1)
            }
            return false
        }
        let client = try MongoClient(url: url)
        try await waitFor("the private Mongo server") { (try? await client.ping()) != nil }
        return (url, pid)
    }

    /// A configuration on this test's servers (postgres dialect, 200 ms polls) with `streams` — YAML list items,
    /// each line indented as under `streams:` — written to `directory/name`. Returns its path.
    public func writeStreamsConfig(_ streams: String, mongo: String? = nil, target: String? = nil, defaults: String = "poll_interval: 200ms",
                                   name: String = "streams.yaml") throws -> String {
        let path = directory + "/" + name
        try """
        state: \(state)
        redshift: { url: "\(target ?? pg)", dialect: postgres }
        mongo: { url: "\(mongo ?? mongoURL)", database: \(database) }
        defaults: { \(defaults) }
        streams:

        """.appending(streams).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The stream's phase as the state store holds it.
    public func phase(_ stream: String) -> String? { Fixtures.streamCounters(stateDirectory: state, stream: stream)?.phase }
}
