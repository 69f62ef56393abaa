import BSON
import Changes

extension Array where Element == Change {
    /// The last change per key, in first-seen order: one write per key in a batch (an unordered bulk or a staging
    /// table must not hold two writes to one key). A batch without repeated keys (every snapshot page) is returned
    /// as it is, without copying a change.
    func latestPerKey() -> [Change] {
        latestPerKey { $0 }
    }

    /// `latestPerKey` with keys told apart by `identity`: the target's idea of one key where it is coarser than
    /// BSON's (Mongo → Redshift: numerically equal `_id`s of different types are one document, one row).
    func latestPerKey<Identity: Hashable>(by identity: (BSON) -> Identity) -> [Change] {
        if keysAscend { return self }
        var index: [Identity: Int] = [:]
        index.reserveCapacity(count)
        var repeated = false
        // By index: a `for change in self` would copy (retain and release) every change just to read its key.
        for i in indices where index.updateValue(i, forKey: identity(self[i].key)) != nil {
            repeated = true
            break
        }
        guard repeated else { return self }
        index.removeAll(keepingCapacity: true)
        var out: [Change] = []
        out.reserveCapacity(count)
        for change in self {
            let key = identity(change.key)
            if let i = index[key] {
                out[i] = change
            } else {
                index[key] = out.count
                out.append(change)
            }
        }
        return out
    }

    /// Keys in strictly ascending order (a snapshot page is read in key order) cannot repeat: checked between
    /// neighbours, without hashing a key or building an index.
    private var keysAscend: Bool {
        guard count > 1 else { return true }
        for i in 1..<count where !Self.precedes(self[i - 1].key, self[i].key) { return false }
        return true
    }

    /// `a < b` for keys of one scalar type; false for anything else (the index decides then).
    private static func precedes(_ a: BSON, _ b: BSON) -> Bool {
        switch (a, b) {
        case (.int64(let x), .int64(let y)): x < y
        case (.int32(let x), .int32(let y)): x < y
        case (.objectId(let x), .objectId(let y)): x < y
        case (.string(let x), .string(let y)): x < y
        default: false
        }
    }
}
