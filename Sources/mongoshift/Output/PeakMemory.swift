import Foundation

/// The process's peak resident set size, for summaries and benchmarks.
enum PeakMemory {
    /// `VmHWM` from /proc/self/status: the high-water mark of this address space. (getrusage's ru_maxrss is
    /// carried across exec on Linux, so a child spawned by a large parent would report the parent's peak.)
    static var megabytes: Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") {
            return kilobytes / 1024
        }
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) / 1024
    }
}
