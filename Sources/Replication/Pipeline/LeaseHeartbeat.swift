import StateStore

/// Keeps a stream's lease while one-shot work runs under it (`snapshot`, `reset`): renewed every third of its
/// duration, so a long copy is not taken over (and fenced) when the first lease period ends. A renewal finding
/// the lease gone cancels the work and throws `Lost`; a store error is not a lost lease (the apply-time check,
/// `holdsLease`, still fences). `run`'s streams have their own heartbeat (`LeasedStreamService`).
public enum LeaseHeartbeat {
    public struct Lost: Error, CustomStringConvertible {
        public var stream: String
        public var description: String { "stream \(stream): another worker took its lease meanwhile" }
    }

    private enum Ending<T: Sendable>: Sendable {
        case done(T)
        case lost
    }

    public static func holding<T: Sendable>(_ lease: Lease, state: StateStore, duration: Duration,
                                            _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Ending<T>.self) { group in
            group.addTask { .done(try await body()) }
            group.addTask {
                while true {
                    try await Task.sleep(for: duration / 3)
                    if let renewed = try? await state.renewLease(lease, duration: duration), !renewed { return .lost }
                }
            }
            defer { group.cancelAll() }
            switch try await group.next()! {
            case .done(let value): return value
            case .lost: throw Lost(stream: lease.stream)
            }
        }
    }
}
