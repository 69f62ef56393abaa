import Synchronization

/// Runs a target's writes one at a time (an async mutex, FIFO), and remembers what they learned about the target
/// that later writes can rely on.
final class ApplyGate: Sendable {
    private let state = Mutex<(busy: Bool, waiters: [CheckedContinuation<Void, Never>], tombstones: Bool?)>((false, [], nil))

    /// Runs `body` after every earlier caller's body has finished.
    func serially<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.busy {
                    s.waiters.append(continuation)
                    return false
                }
                s.busy = true
                return true
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }

    /// Whether tombstones may exist: asked of the target once (`check`), then known (this gate's writes are the
    /// only ones that add them).
    func mayHaveTombstones(_ check: () async throws -> Bool) async throws -> Bool {
        if let known = state.withLock({ $0.tombstones }) { return known }
        let found = try await check()
        state.withLock { $0.tombstones = found }
        return found
    }

    func noteTombstones() {
        state.withLock { $0.tombstones = true }
    }
}
