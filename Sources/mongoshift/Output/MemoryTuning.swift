import MongoClient

/// glibc malloc settings that keep peak memory flat over long runs: a fixed mmap threshold (glibc otherwise
/// raises it after each large free, so later multi-MiB page buffers land in the heap and fragment it: 80 MiB
/// instead of 52 for a snapshot), a bounded number of arenas (one per I/O thread otherwise), and a trim threshold
/// that keeps freed heap for the next batch (trimmed after every batch, a thread's heap faulted its pages in again
/// each time: a third more CPU applying 100,000 rows to Mongo). With the threshold fixed, libmongoc's large buffers
/// would be mapped and faulted in again for every bulk write: `LargeBlockCache` keeps them instead.
enum MemoryTuning {
    // <malloc.h> is not part of Swift's Glibc module; mallopt and its parameter numbers are a stable glibc ABI.
    @_silgen_name("mallopt")
    private static func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
    private static let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
    private static let arenaMax: Int32 = -8       // M_ARENA_MAX
    private static let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD

    static let mmapThresholdBytes = 256 * 1024

    static func apply() {
        LargeBlockCache.install(minimumBytes: mmapThresholdBytes)
        #if os(Linux)
        _ = mallopt(mmapThreshold, Int32(mmapThresholdBytes))
        _ = mallopt(arenaMax, 4)
        _ = mallopt(trimThreshold, 64 << 20)
        #endif
    }
}
