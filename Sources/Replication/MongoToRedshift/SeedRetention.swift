import BSON

/// Whether the change-stream position a Mongo snapshot's tail will start from (its seed) is still in the oplog,
/// and — at the copy's pace — whether it still will be when the copy ends (docs/ARCHITECTURE.md, "A snapshot
/// longer than the oplog"). A copy that outlives its seed can never be followed by the tail: re-snapshotting
/// would only start the same race again.
enum SeedRetention {
    enum Verdict: Sendable, Equatable {
        /// The oplog's edges could not be read (no privileges on `local`): only the tail's open can tell.
        case unknown
        case holds
        /// At this pace the copy ends after the seed leaves the oplog (the oplog's span taken as steady).
        case atRisk(copyLeft: Duration, seedLeft: Duration)
        /// The oldest entry in the oplog is newer than the seed: the tail cannot resume from it.
        case lost
    }

    /// The copy must end within this share of the seed's remaining time (a fifth to spare): the tail still has to
    /// read everything written during the copy.
    static let margin = 0.8

    /// `seed`: the cluster time read right after the seed's token was taken. A stream opened with no start point
    /// starts one tick after the member's last applied entry, which that read reports: the token may be one tick
    /// newer than `seed`, so only an oldest entry past `seed` + 1 tick proves it gone. `oldest`: the oplog's first
    /// entry. `copyLeft`: the copy's remaining time at its pace so far, when known.
    static func judge(seed: BSONTimestamp, oldest: BSONTimestamp?, copyLeft: Duration?) -> Verdict {
        guard let oldest else { return .unknown }
        let nextTick = seed.increment == .max ? BSONTimestamp(seconds: seed.seconds &+ 1, increment: 0)
                                              : BSONTimestamp(seconds: seed.seconds, increment: seed.increment + 1)
        if oldest > nextTick { return .lost }
        guard let copyLeft else { return .holds }
        // The oplog keeps about the same span of time: the seed leaves it once the oldest entry's age has
        // grown by the seed's lead over it.
        let seedLeft = Duration.seconds(Int64(seed.seconds) - Int64(oldest.seconds))
        return copyLeft > seedLeft * margin ? .atRisk(copyLeft: copyLeft, seedLeft: seedLeft) : .holds
    }
}

/// The copy's pace measured by one watcher: rows done at its first sample, then at each later one.
struct CopyPace: Sendable {
    private var first: (rows: Int, at: ContinuousClock.Instant)?

    /// The time the copy still needs at its pace since the first sample (nil before there is a pace to judge).
    mutating func remaining(rowsDone: Int, rowsTotal: Int, now: ContinuousClock.Instant) -> Duration? {
        guard let first else {
            self.first = (rowsDone, now)
            return nil
        }
        let elapsed = now - first.at
        let rows = rowsDone - first.rows
        guard rows > 0, elapsed > .zero else { return nil }
        let left = max(0, rowsTotal - rowsDone)
        return elapsed * (Double(left) / Double(rows))
    }
}
