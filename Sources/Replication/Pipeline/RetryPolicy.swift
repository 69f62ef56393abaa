import ServiceLifecycle
import ShiftCore

/// Capped exponential backoff with full jitter, and the rule for what is worth retrying.
public struct RetryPolicy: Sendable {
    public var initialDelay: Duration = .milliseconds(200)
    public var maxDelay: Duration = .seconds(30)
    /// nil: retry forever (the daemon); a number: give up after that many attempts (one-shot commands).
    public var maxAttempts: Int?

    /// The daemon's policy: retry forever, never waiting more than 5 s (a returning server is noticed quickly).
    public static let daemon = RetryPolicy(initialDelay: .milliseconds(200), maxDelay: .seconds(5))

    public init(initialDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(30), maxAttempts: Int? = nil) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.maxAttempts = maxAttempts
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

    /// Runs `body` until it succeeds, a permanent error occurs, or attempts run out. `onRetry` hears each failure.
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T,
                                 onRetry: @Sendable (Error, Int, Duration) async -> Void = { _, _, _ in }) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch {
                attempt += 1
                if Task.isCancelled || Task.isShuttingDownGracefully || !Self.isTransient(error) { throw error }
                if let maxAttempts, attempt >= maxAttempts { throw error }
                let wait = delay(attempt: attempt)
                await onRetry(error, attempt, wait)
                try await Task.sleep(for: wait)
            }
        }
    }
}
