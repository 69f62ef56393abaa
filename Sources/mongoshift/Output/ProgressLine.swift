import Foundation
import Replication

/// Snapshot progress: on a terminal, one line per stream redrawn in place (rows, rate, ETA); otherwise a
/// structured log line at most every 5 s per stream. Log lines printed meanwhile scroll above the progress block.
final class ProgressLine: ProgressReporter, @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    static let shared = ProgressLine()
    private let lock = NSLock()
    private var lines: [String: String] = [:]
    private var order: [String] = []
    private var drawn = 0
    private var lastLogged: [String: Date] = [:]
    let isTerminal = isatty(STDERR_FILENO) != 0
    var logger: ((SnapshotProgress) -> Void)?

    func update(_ p: SnapshotProgress) {
        let eta = p.secondsRemaining.map { Self.formatDuration($0) } ?? "?"
        let rows: String
        if p.isPastEstimate {
            // The estimate was low: no percentage, no ETA from it (partitions still tell how far it is).
            rows = "\(p.rowsDone) rows (past the estimate of \(p.rowsTotal))"
        } else {
            let percent = p.isFinished ? 100 : p.rowsTotal > 0 ? min(100, Double(p.rowsDone) * 100 / Double(p.rowsTotal)) : 0
            rows = "\(p.rowsDone)/\(p.rowsTotal) rows (\(String(format: "%.1f", percent))%)"
        }
        let text = "\(p.stream): \(rows), \(Int(p.rowsPerSecond)) rows/s, ETA \(eta), partitions \(p.partitionsDone)/\(p.partitionsTotal)"
        var shouldLog = false
        lock.lock()
        if isTerminal {
            if lines[p.stream] == nil { order.append(p.stream) }
            lines[p.stream] = text
            redraw()
        } else if Date().timeIntervalSince(lastLogged[p.stream] ?? .distantPast) >= 5 || p.isFinished {
            lastLogged[p.stream] = Date()
            shouldLog = true
        }
        lock.unlock()
        // The logger writes through `write(log:)`, which takes the lock: call it outside.
        if shouldLog { logger?(p) }
    }

    func finish(stream: String) {
        lock.lock()
        defer { lock.unlock() }
        guard isTerminal, lines[stream] != nil else { return }
        redraw()
    }

    /// Writes a log line above the progress block.
    func write(log line: String) {
        lock.lock()
        defer { lock.unlock() }
        if isTerminal && drawn > 0 {
            emit("\u{1B}[\(drawn)A\u{1B}[J" + line)
            drawn = 0
            redraw()
        } else {
            emit(line)
        }
    }

    private func redraw() {
        var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        for name in order { out += "\r\u{1B}[2K" + (lines[name] ?? "") + "\n" }
        drawn = order.count
        emit(out)
    }

    private func emit(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func formatDuration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", s / 60 % 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }
}
