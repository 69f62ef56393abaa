@testable import Replication
import XCTest

/// The reconciler's equal-width ranges and the bucket the source computes for a key.
final class ReconcileBucketsTests: XCTestCase {
    func testRangesCoverTheKeySpaceAndEveryKeyFallsInItsOwn() throws {
        for (lo, hi, parts) in [(Int64(1), Int64(30_000), 6), (1, 7, 3), (-50, 50, 7), (5, 5, 4), (0, 1_000_003, 200),
                                (Int64.min / 2, Int64.max / 2 - 1, 1_000), (Int64.max - 10, Int64.max, 3)] {
            let b = try XCTUnwrap(ReconcileBuckets(lo: lo, hi: hi, parts: parts), "\(lo)…\(hi)")
            XCTAssertLessThanOrEqual(b.count, parts)
            XCTAssertEqual(b.upper(b.count), hi, "the last range ends at hi")
            XCTAssertNil(b.bounds(1).lower, "the first range is unbounded below")
            for i in 2...max(2, b.count) where i <= b.count {
                XCTAssertEqual(b.bounds(i).lower, b.upper(i - 1))
                XCTAssertLessThan(b.upper(i - 1), b.upper(i))
            }
            var keys = [lo, hi, lo &+ 1, hi &- 1, lo / 2 + hi / 2]
            if lo > Int64.min { keys.append(lo - 1) }
            for key in keys where key <= hi {
                let i = b.bucket(of: key)
                XCTAssertTrue((1...b.count).contains(i), "\(key) → \(i)")
                XCTAssertLessThanOrEqual(key, b.upper(i), "\(key) in range \(i)")
                if let lower = b.bounds(i).lower { XCTAssertGreaterThan(key, lower, "\(key) in range \(i)") }
            }
        }
    }

    func testAKeySpaceWiderThanSixtyFourBitsIsLeftToRangeByRange() {
        XCTAssertNil(ReconcileBuckets(lo: Int64.min, hi: Int64.max, parts: 10))
        XCTAssertNil(ReconcileBuckets(lo: 10, hi: 5, parts: 10))
    }

    func testTheSourceComputesTheSameBucket() {
        XCTAssertEqual(ReconcileBuckets.sql("\"id\"", lo: 3, width: 4),
                       "CASE WHEN CAST(\"id\" AS BIGINT) <= CAST($3 AS BIGINT) THEN 1 "
                       + "ELSE (CAST(\"id\" AS BIGINT) - CAST($3 AS BIGINT) - 1) / CAST($4 AS BIGINT) + 1 END")
    }
}
