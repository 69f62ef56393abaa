import BSON
import Changes

extension TypeBracket {
    /// The bracket a partition bound lies in (nil: unbounded, as partitions planned before brackets were).
    init?(of key: SnapshotKey?) {
        switch key {
        case .typeBracket(let name)?: self.init(name: name)
        case .documentID(let value)?: self.init(of: value)
        default: return nil
        }
    }
}
