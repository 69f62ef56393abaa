import BSON

/// Decides which documents a hard-delete reconcile may delete (docs/CONFIG.md, "Hard deletes"): a document goes
/// only after it was found missing at the source on two cycles at least `grace` apart, and a cycle that finds
/// more than `maxRatio` of the target missing deletes nothing — a table being reloaded (DELETE, then INSERT in
/// another transaction), a wrong filter or a truncation must not empty the collection. A value type: the
/// reconciler keeps it between cycles.
struct DeleteGuard: Sendable, Equatable {
    var maxRatio: Double
    var grace: Double
    /// Keys found missing, with the time they were first found missing.
    private(set) var pending: [BSON: Double] = [:]

    enum Decision: Sendable, Equatable {
        /// Nothing deleted: `missing` (at least) documents are gone at the source, over `limit`.
        case refuse(missing: Int, limit: Int)
        /// Delete these (missing on an earlier cycle at least `grace` ago); others wait for a later cycle.
        case delete([BSON], waiting: Int)
    }

    init(maxRatio: Double, graceSeconds: Double) {
        self.maxRatio = maxRatio
        self.grace = graceSeconds
    }

    /// The most documents one cycle may find missing: the ratio of the collection, at least one (a small
    /// collection can lose a row), none with a ratio of 0.
    func limit(targetCount: Int) -> Int {
        maxRatio <= 0 ? 0 : max(1, Int((maxRatio * Double(targetCount)).rounded(.down)))
    }

    /// `missing`: this cycle's keys present in the target and absent at the source; `complete` false when the
    /// cycle stopped listing them past the limit.
    mutating func decide(missing: [BSON], complete: Bool, targetCount: Int, now: Double) -> Decision {
        let limit = limit(targetCount: targetCount)
        guard complete, missing.count <= limit else { return .refuse(missing: missing.count, limit: limit) }
        var next: [BSON: Double] = [:]
        var ready: [BSON] = []
        for key in missing {
            if let first = pending[key], now - first >= grace {
                ready.append(key)
            } else {
                next[key] = pending[key] ?? now
            }
        }
        // Keys no longer missing (re-inserted, or a transient gap) are forgotten.
        pending = next
        return .delete(ready, waiting: next.count)
    }
}
