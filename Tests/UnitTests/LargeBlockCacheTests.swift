@testable import MongoClient
import XCTest

/// The policy of `LargeBlockCache` (which freed blocks libmongoc gets back), without the allocator.
final class LargeBlockCacheTests: XCTestCase {
    let limits = LargeBlockCache.Limits(minimumBytes: 1_000, maxBlocks: 3, maxBytes: 10_000)

    func testSmallBlocksAreNotKeptAndOversizedOnesNeither() {
        var cache = LargeBlockCache.Cache(limits: limits)
        XCTAssertEqual(cache.keep(1, size: 999), [1], "under the minimum: freed")
        XCTAssertEqual(cache.keep(2, size: 10_001), [2], "over the byte limit alone: freed")
        XCTAssertEqual(cache.blocks.count, 0)
        XCTAssertNil(cache.take(atLeast: 1_000))
    }

    func testTakeHandsOutTheSmallestBlockThatFits() {
        var cache = LargeBlockCache.Cache(limits: limits)
        XCTAssertEqual(cache.keep(1, size: 4_000), [])
        XCTAssertEqual(cache.keep(2, size: 2_000), [])
        XCTAssertEqual(cache.keep(3, size: 3_000), [])
        XCTAssertEqual(cache.bytes, 9_000)
        XCTAssertEqual(cache.take(atLeast: 2_500), 3)
        XCTAssertEqual(cache.take(atLeast: 4_001), nil, "nothing that large: the caller allocates")
        XCTAssertEqual(cache.take(atLeast: 1_000), 2)
        XCTAssertEqual(cache.take(atLeast: 1_000), 1)
        XCTAssertEqual(cache.bytes, 0)
        XCTAssertNil(cache.take(atLeast: 1_000), "a block is handed out once")
    }

    func testAFullCacheMakesRoomForALargerBlockAndRefusesASmallerOne() {
        var cache = LargeBlockCache.Cache(limits: limits)
        _ = cache.keep(1, size: 2_000)
        _ = cache.keep(2, size: 3_000)
        _ = cache.keep(3, size: 4_000)
        XCTAssertEqual(cache.keep(4, size: 1_500), [4], "the kept ones are larger: the new one is freed")
        XCTAssertEqual(cache.keep(5, size: 5_000), [1, 2], "the smallest go until count and bytes fit")
        XCTAssertEqual(Set(cache.blocks.map(\.address)), [3, 5])
        XCTAssertEqual(cache.bytes, 9_000)
        XCTAssertLessThanOrEqual(cache.bytes, limits.maxBytes)
    }
}
