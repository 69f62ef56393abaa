/// Turns `batch_bytes` (bounded by `memory_budget`: `StreamConfig.pageBytes`) into rows per page or poll, and
/// says when a batch is full — the one sizing rule for every reader and writer (docs/ARCHITECTURE.md, "Memory").
/// Rows per page adapt to the observed row width, so a page is about `targetBytes` whatever the table.
struct BatchSizer: Sendable {
    let targetBytes: Int
    private(set) var rows: Int
    static let minRows = 100
    static let maxRows = 200_000

    init(targetBytes: Int, assumedRowBytes: Int = 512) {
        self.targetBytes = targetBytes
        rows = Self.clamp(targetBytes / max(16, assumedRowBytes))
    }

    init(_ stream: StreamConfig) {
        self.init(targetBytes: stream.pageBytes)
    }

    /// Learns the row width from a page just read.
    mutating func observe(rows n: Int, bytes: Int) {
        guard n > 0 else { return }
        rows = Self.clamp(targetBytes / max(16, bytes / n))
    }

    /// A batch of `bytes` has reached the target.
    func isFull(bytes: Int) -> Bool { bytes >= targetBytes }

    /// Buffer capacity to reserve for one page (a page may overshoot the target by one row).
    var reserveBytes: Int { min(targetBytes + (1 << 20), 64 << 20) }

    private static func clamp(_ n: Int) -> Int { max(minRows, min(maxRows, n)) }
}
