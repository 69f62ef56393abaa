internal import CMalloc

/// glibc's allocator, set for a long-running process that fills and frees page-sized buffers (segments, frames,
/// bulk commands) on several threads. By default each buffer of a few MiB is mapped and unmapped, and a thread's
/// heap is trimmed back to the kernel after every batch, so the next batch faults every page in again (30,000 page
/// faults applying 100,000 rows, against 750 for a C loop doing the same writes on one thread). Kept instead, the
/// memory is reused; peak RSS is the working set either way.
public enum AllocatorTuning {
    public static func keepBuffersForReuse() {
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
    }
}
