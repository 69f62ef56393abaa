import Logging
import Metrics
import MongoClient
import PostgresClient
import ServiceLifecycle
import ShiftCore

/// Capped exponential backoff with full jitter, and the rule for what is worth retrying.
public struct RetryPolicy: Sendable {
    public var initialDelay: Duration = .milliseconds(200)
    public var maxDelay: Duration = .seconds(30)
    /// nil: retry forever (the daemon); a number: give up after that many attempts (one-shot commands).
    public var maxAttempts: Int?
    /// Also retry a server that refuses the connection (credentials, TLS, an unknown database or role). The
    /// daemon does: a password being rotated or a database being restored is not permanent, and an operator
    /// fixing it should not have to restart replication. One-shot commands do not: they fail fast (exit 3).
    public var retriesRefusedConnections = false

    /// The daemon's policy: retry forever, refusals included, never waiting more than 5 s (a returning server is
    /// noticed quickly).
    public static let daemon = RetryPolicy(initialDelay: .milliseconds(200), maxDelay: .seconds(5), retriesRefusedConnections: true)

    public init(initialDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(30), maxAttempts: Int? = nil,
                retriesRefusedConnections: Bool = false) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.maxAttempts = maxAttempts
        self.retriesRefusedConnections = retriesRefusedConnections
    }

    /// Delay before attempt `attempt` (1-based): uniform in [0, min(max, initial · 2^(attempt-1))].
    public func delay(attempt: Int) -> Duration {
        let cap = min(maxDelay.seconds, initialDelay.seconds * pow2(attempt - 1))
        return .milliseconds(Int64(Double.random(in: 0.5...1.0) * cap * 1000))
    }

    private func pow2(_ n: Int) -> Double { n >= 62 ? .greatestFiniteMagnitude : Double(1 << max(0, n)) }

    /// Connection loss, failover, admin cancel, timeouts, a locked or unreachable state store: transient (each
    /// library's error says so itself). Everything else is permanent.
    public static func isTransient(_ error: Error) -> Bool {
        (error as? any TransientClassifying)?.isTransient ?? false
    }

    /// A server that would not let us in: wrong credentials, TLS required, an unknown database.
    public static func isRefusedConnection(_ error: Error) -> Bool {
        switch error {
        case let e as PostgresError: e.code == .connectionFailed
        case let e as MongoError: e.code == .connection || e.code == .authentication || e.serverCode == 18  // 18: AuthenticationFailed
        default: false
        }
    }

    /// Whether this policy retries `error`.
    public func retries(_ error: Error) -> Bool {
        Self.isTransient(error) || (retriesRefusedConnections && Self.isRefusedConnection(error))
    }

    /// Runs `body` until it succeeds, a permanent error occurs, or attempts run out. `report` (if any) hears the
    /// failures once per change of state and the recovery.
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T, report: RetryReport? = nil) async throws -> T {
        var attempt = 0
        var last: String?
        let started = ContinuousClock.now
        while true {
            do {
                let result = try await body()
                if attempt > 0 { report?.recovered(attempts: attempt, after: ContinuousClock.now - started) }
                return result
            } catch {
                attempt += 1
                if Task.isCancelled || Task.isShuttingDownGracefully || !retries(error) { throw error }
                if let maxAttempts, attempt >= maxAttempts { throw error }
                let wait = delay(attempt: attempt)
                let description = "\(error)"
                report?.failed(error, attempt: attempt, wait: wait, changed: description != last)
                last = description
                try await Task.sleep(for: wait)
            }
        }
    }
}

/// How a retried operation is reported: a failure once when it starts (and again only when it changes), repeats at
/// debug level, the recovery once — so a server down for an hour is one warning and one notice, not thousands.
public struct RetryReport: Sendable {
    let logger: Logger
    /// "source", "target": what failed.
    let what: String
    let retries: Counter?

    init(logger: Logger, what: String, retries: Counter? = nil) {
        self.logger = logger
        self.what = what
        self.retries = retries
    }

    func failed(_ error: Error, attempt: Int, wait: Duration, changed: Bool) {
        retries?.increment()
        let metadata: Logger.Metadata = ["error": "\(error)", "attempt": "\(attempt)", "wait_s": "\(String(format: "%.1f", wait.seconds))"]
        if changed {
            logger.warning("\(what) error, retrying until it succeeds", metadata: metadata)
        } else {
            logger.debug("\(what) error, retrying", metadata: metadata)
        }
    }

    func recovered(attempts: Int, after: Duration) {
        logger.notice("\(what) reachable again", metadata: ["attempts": "\(attempts)", "after_s": "\(Int(after.seconds))"])
    }
}
