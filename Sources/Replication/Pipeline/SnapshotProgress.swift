import Foundation

/// Snapshot progress for one stream.
public struct SnapshotProgress: Sendable {
    public var stream: String
    public var rowsDone: Int
    public var rowsTotal: Int
    public var partitionsDone: Int
    public var partitionsTotal: Int
    public var rowsPerSecond: Double
    /// Every partition copied.
    public var isFinished: Bool { partitionsDone >= partitionsTotal }
    /// The copy went past `rowsTotal` (an estimate: planner statistics, a collection's count) with partitions
    /// still to go: how much is left is not known.
    public var isPastEstimate: Bool { !isFinished && rowsDone >= rowsTotal }
    /// Nil while unknown (no rate yet, or past the estimate).
    public var secondsRemaining: Double? {
        if isFinished { return 0 }
        guard rowsPerSecond > 0, rowsTotal > rowsDone else { return nil }
        return Double(rowsTotal - rowsDone) / rowsPerSecond
    }
}

/// Receives progress of long work; the executable draws it on a terminal or logs it.
public protocol ProgressReporter: Sendable {
    func update(_ progress: SnapshotProgress)
    func finish(stream: String)
}

/// Counts shared by the concurrent copiers of one snapshot round.
actor SnapshotCounters {
    var rowsDone: Int
    var partitionsDone: Int
    var extractionFinished = false
    let started = ContinuousClock.now
    let rowsAtStart: Int

    init(rowsDone: Int, partitionsDone: Int) {
        self.rowsDone = rowsDone
        self.partitionsDone = partitionsDone
        rowsAtStart = rowsDone
    }

    func add(rows: Int) -> Int {
        rowsDone += rows
        return rowsDone
    }

    func partitionDone() { partitionsDone += 1 }
    func finishExtraction() { extractionFinished = true }

    func rate() -> Double {
        let elapsed = (ContinuousClock.now - started).seconds
        return elapsed > 0 ? Double(rowsDone - rowsAtStart) / elapsed : 0
    }
}
