/// How far a watermark poll may read (docs/CONFIG.md, "Late commits"): never past the source clock minus
/// `safety_lag`, and never past where an open transaction writing the table may still commit rows.
///
/// Time watermarks: the bound is `min(now - safety_lag, start of the oldest open writer - 1 µs)` — rows stamped
/// by a transaction carry at least its start. Stamps coarser than a microsecond (`timestamp(0)`, Redshift's
/// `GETDATE()` in whole seconds) are truncated below the instant they were made: the bound then stops before the
/// whole unit that instant falls in (a writer that began at 12:00:00.7 stamps 12:00:00). Integer watermarks (sequence-like): values are handed out in
/// order, so a transaction that started at T holds values above every value visible at T; the bound is the
/// largest value visible at `min(now - safety_lag, oldest writer start)`, from samples taken with each poll.
/// Pure logic: unit-tested without a database.
struct PollBound: Sendable {
    let kind: WatermarkKind
    let safetyLag: Duration
    /// The unit stamps are truncated to, in microseconds (1: exact).
    let stampUnit: Int64
    /// Integer watermarks: (source time µs, largest watermark visible then), one per poll, oldest first.
    private(set) var samples: [(time: Int64, value: Int64)] = []

    init(kind: WatermarkKind, safetyLag: Duration, stampUnit: Int64 = 1) {
        self.kind = kind
        self.safetyLag = safetyLag
        self.stampUnit = max(1, stampUnit)
    }

    struct Decision: Sendable, Equatable {
        /// The bound value (microseconds or the integer); nil: nothing may be read past the current position yet.
        var value: Int64?
        /// The open transaction holding the bound below `now - safety_lag`, if one does.
        var heldBy: TransactionHorizon.OpenTransaction?
        /// How far below `now - safety_lag` the hold keeps the bound, in seconds (0 when not held).
        var holdSeconds: Double
    }

    func decide(_ horizon: TransactionHorizon, position: Int64?) -> Decision {
        let clockBound = horizon.now - Int64(safetyLag.seconds * 1_000_000)
        if let writer = horizon.oldestWriter, writer.isPrepared {
            // Its rows' stamps are unknown: hold where the tail stands (a seed, with no position, starts from the
            // beginning: everything is read again).
            let held = kind == .integer ? 0 : position.map { Double(max(0, clockBound - $0)) / 1_000_000 } ?? 0
            return Decision(value: position, heldBy: writer, holdSeconds: held)
        }
        var timeBound = clockBound
        var heldBy: TransactionHorizon.OpenTransaction?
        if let writer = horizon.oldestWriter, writer.start <= clockBound {
            timeBound = writer.start - 1
            heldBy = writer
        }
        let hold = heldBy == nil ? 0 : Double(clockBound - timeBound) / 1_000_000
        switch kind {
        case .time:
            guard stampUnit > 1 else { return Decision(value: timeBound, heldBy: heldBy, holdSeconds: hold) }
            // The unit the bound falls in may still receive stamps: stop just before it.
            let unitStart = timeBound - ((timeBound % stampUnit) + stampUnit) % stampUnit
            return Decision(value: unitStart - 1, heldBy: heldBy, holdSeconds: hold)
        case .integer:
            // The largest value visible at timeBound; before a sample that old exists (a fresh start), nothing
            // past the current position.
            let visible = samples.last(where: { $0.time <= timeBound })?.value
            return Decision(value: visible ?? position, heldBy: heldBy, holdSeconds: hold)
        }
    }

    /// Integer watermarks: the largest watermark visible at source time `time` (taken with a poll). Keeps the
    /// samples as far back as a bound may reach (`oldestNeeded`: the earliest bound time still possible).
    mutating func sample(time: Int64, maxVisible: Int64?, oldestNeeded: Int64) {
        guard kind == .integer, let maxVisible else { return }
        samples.append((time, maxVisible))
        // Samples older than the newest one at or before `oldestNeeded` can no longer be the answer.
        if let keep = samples.lastIndex(where: { $0.time <= oldestNeeded }), keep > 0 { samples.removeFirst(keep) }
    }
}
