import Foundation

/// The process's peak resident set size (getrusage), for summaries and benchmarks.
enum PeakMemory {
    static var megabytes: Int {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) / 1024  // kilobytes on Linux
    }
}
