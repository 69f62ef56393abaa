import BSON
import Changes

extension Array where Element == Change {
    /// The last change per key, in first-seen order: one write per key in a batch (an unordered bulk or a staging
    /// table must not hold two writes to one key).
    func latestPerKey() -> [Change] {
        var index: [BSON: Int] = [:]
        var out: [Change] = []
        out.reserveCapacity(count)
        for change in self {
            if let i = index[change.key] {
                out[i] = change
            } else {
                index[change.key] = out.count
                out.append(change)
            }
        }
        return out
    }
}
