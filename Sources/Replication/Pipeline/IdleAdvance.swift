import Changes
import StateStore
import Synchronization

/// Hands an idle source's newer position from the extractor to the apply side (a change stream's
/// postBatchResumeToken while nothing changes). The extractor never writes the applied position itself: it posts
/// here, and the applier, once the spool is drained, persists it through `StateStore.advanceIdle`, which refuses it
/// when a segment is pending, the lease was lost or the extract position was rewound. Posting a segment clears
/// the mailbox first, so a stale idle position can never follow a newer segment.
final class IdleAdvance: Sendable {
    private let latest = Mutex<(position: StreamPosition, generation: Int64)?>(nil)

    func post(_ position: StreamPosition, generation: Int64) {
        latest.withLock { $0 = (position, generation) }
    }

    func clear() {
        latest.withLock { $0 = nil }
    }

    func take() -> (position: StreamPosition, generation: Int64)? {
        latest.withLock { value in
            defer { value = nil }
            return value
        }
    }
}
