internal import CMongoC
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// <malloc.h> is not part of Swift's Glibc module; malloc_usable_size is a stable glibc ABI.
@_silgen_name("malloc_usable_size")
private func mallocUsableSize(_ block: UnsafeMutableRawPointer?) -> Int

/// Keeps libbson's and libmongoc's large freed blocks for their next large request.
///
/// libmongoc builds each bulk write's documents in one buffer that doubles until it holds the batch (megabytes
/// for a spool segment). Above the process's fixed mmap threshold every such block is a mapping of its own, so each
/// batch used to fault its pages in again and unmap them at the end: most of a Redshift → Mongo apply's page faults
/// (bench/PROFILE.md). Freed blocks of at least `minimumBytes` are kept here, up to `maxBlocks` and `maxBytes` in
/// all, and handed to the next large request they fit; the memory they hold was resident while in use anyway.
public enum LargeBlockCache {
    /// Routes libbson's allocator through the cache. Call it as the process starts, as libbson asks. (Every block
    /// here is a glibc `malloc` block either way, so one allocated before — libmongoc initialises itself when the
    /// library loads — is freed or kept like any other.)
    public static func install(minimumBytes: Int, maxBlocks: Int = 4, maxBytes: Int = 32 << 20) {
        // Installed again (tests): blocks kept under the old limits are freed.
        let dropped = largeBlocks.withLock { cache in
            defer { cache = Cache(limits: Limits(minimumBytes: minimumBytes, maxBlocks: maxBlocks, maxBytes: maxBytes)) }
            return cache.blocks.map(\.address)
        }
        for address in dropped { free(UnsafeMutableRawPointer(bitPattern: address)) }
        largeBlockThreshold.store(minimumBytes, ordering: .relaxed)
        var table = bson_mem_vtable_t(malloc: { allocateBlock($0) }, calloc: { calloc($0, $1) },
                                      realloc: { reallocateBlock($0, $1) }, free: { releaseBlock($0) },
                                      aligned_alloc: { aligned_alloc($0, $1) }, padding: (nil, nil, nil))
        bson_mem_set_vtable(&table)
    }

    /// Blocks currently kept, and their bytes (tests).
    public static var kept: (blocks: Int, bytes: Int) {
        largeBlocks.withLock { ($0.blocks.count, $0.bytes) }
    }

    struct Limits {
        var minimumBytes: Int
        var maxBlocks: Int
        var maxBytes: Int
    }

    /// The kept blocks as addresses and usable sizes; the policy, without the allocator, so tests can drive it.
    struct Cache {
        let limits: Limits
        private(set) var blocks: [(address: UInt, size: Int)] = []
        private(set) var bytes = 0

        init(limits: Limits) {
            self.limits = limits
            blocks.reserveCapacity(limits.maxBlocks + 1)
        }

        /// The smallest kept block of at least `size` bytes, removed from the cache.
        mutating func take(atLeast size: Int) -> UInt? {
            var best: Int?
            for (i, block) in blocks.enumerated() where block.size >= size {
                if best.map({ block.size < blocks[$0].size }) ?? true { best = i }
            }
            guard let best else { return nil }
            bytes -= blocks[best].size
            return blocks.remove(at: best).address
        }

        /// Keeps a freed block, evicting smaller ones to make room; returns the blocks to free (maybe this one).
        mutating func keep(_ address: UInt, size: Int) -> [UInt] {
            guard size >= limits.minimumBytes, size <= limits.maxBytes, limits.maxBlocks > 0 else { return [address] }
            var evicted: [UInt] = []
            while let smallest = blocks.indices.min(by: { blocks[$0].size < blocks[$1].size }),
                  blocks.count >= limits.maxBlocks || bytes + size > limits.maxBytes {
                if blocks[smallest].size > size { return evicted + [address] }  // the kept ones are worth more
                bytes -= blocks[smallest].size
                evicted.append(blocks.remove(at: smallest).address)
            }
            blocks.append((address, size))
            bytes += size
            return evicted
        }
    }
}

private let largeBlocks = Mutex(LargeBlockCache.Cache(limits: .init(minimumBytes: .max, maxBlocks: 0, maxBytes: 0)))
private let largeBlockThreshold = Atomic<Int>(.max)

private func allocateBlock(_ size: Int) -> UnsafeMutableRawPointer? {
    if size >= largeBlockThreshold.load(ordering: .relaxed), let kept = largeBlocks.withLock({ $0.take(atLeast: size) }) {
        return UnsafeMutableRawPointer(bitPattern: kept)
    }
    return malloc(size)
}

private func releaseBlock(_ block: UnsafeMutableRawPointer?) {
    guard let block else { return }
    let size = mallocUsableSize(block)
    guard size >= largeBlockThreshold.load(ordering: .relaxed) else { return free(block) }
    let toFree = largeBlocks.withLock { $0.keep(UInt(bitPattern: block), size: size) }
    for address in toFree { free(UnsafeMutableRawPointer(bitPattern: address)) }
}

private func reallocateBlock(_ block: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let block else { return allocateBlock(size) }
    if size == 0 { releaseBlock(block); return nil }
    let usable = mallocUsableSize(block)
    if size <= usable { return block }
    // Growing into a kept block copies the old contents; otherwise glibc moves a mapping without copying.
    if size >= largeBlockThreshold.load(ordering: .relaxed), let kept = largeBlocks.withLock({ $0.take(atLeast: size) }),
       let target = UnsafeMutableRawPointer(bitPattern: kept) {
        target.copyMemory(from: block, byteCount: usable)
        releaseBlock(block)
        return target
    }
    return realloc(block, size)
}
