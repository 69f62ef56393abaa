import Synchronization

/// Runs a target's writes one at a time (an async mutex, FIFO), and remembers what they learned about the target
/// that later writes can rely on.
final class ApplyGate: Sendable {
    private let state = Mutex<(busy: Bool, waiters: [CheckedContinuation<Void, Never>], tombstones: Bool)>((false, [], false))

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

    /// Whether tombstones may exist: once some were found (or written here), always; until then asked of the
    /// target each time (`check`) — other workers' appliers and `verify --repair` write them too.
    func mayHaveTombstones(_ check: () async throws -> Bool) async throws -> Bool {
        if state.withLock({ $0.tombstones }) { return true }
        let found = try await check()
        if found { state.withLock { $0.tombstones = true } }
        return found
    }

    func noteTombstones() {
        state.withLock { $0.tombstones = true }
    }
}
