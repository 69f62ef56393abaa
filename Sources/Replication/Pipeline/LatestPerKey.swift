import BSON
import Changes

extension Array where Element == Change {
    /// The last change per key, in first-seen order: one write per key in a batch (an unordered bulk or a staging
    /// table must not hold two writes to one key). A batch without repeated keys (every snapshot page) is returned
    /// as it is, without copying a change.
    func latestPerKey() -> [Change] {
        var index: [BSON: Int] = [:]
        index.reserveCapacity(count)
        var repeated = false
        // By index: a `for change in self` would copy (retain and release) every change just to read its key.
        for i in indices where index.updateValue(i, forKey: self[i].key) != nil {
            repeated = true
            break
        }
        guard repeated else { return self }
        index.removeAll(keepingCapacity: true)
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
