import Foundation

/// Paces writes to at most `perSecond` operations per second (`max_writes_per_second`, docs/CONFIG.md): each
/// `acquire(n)` waits until the schedule has room for `n` more. Bursts are at most `chunk` operations, so callers
/// split larger writes into `chunk`-sized bulks.
public actor WriteRateLimiter {
    public let perSecond: Int
    private var schedule = WriteSchedule()

    public init(perSecond: Int) {
        self.perSecond = max(1, perSecond)
    }

    /// Operations per bulk write: a tenth of a second's budget (at least 1).
    public nonisolated var chunk: Int { max(1, perSecond / 10) }

    public func acquire(_ operations: Int) async throws {
        let wait = schedule.reserve(operations, perSecond: Double(perSecond), now: ContinuousClock.now)
        if wait > .zero { try await Task.sleep(for: wait) }
    }
}

/// The pacing arithmetic, without a clock of its own: the time the next operation may start.
struct WriteSchedule: Sendable {
    private var nextFree: ContinuousClock.Instant?

    /// Books `operations` and returns how long to wait before sending them.
    mutating func reserve(_ operations: Int, perSecond: Double, now: ContinuousClock.Instant) -> Duration {
        let start = max(now, nextFree ?? now)
        nextFree = start + .seconds(Double(operations) / perSecond)
        return start - now
    }
}
