import BSON
@testable import Replication
import XCTest

/// A Mongo snapshot's tail start against the oplog's edges, and the copy's pace.
final class SeedRetentionTests: XCTestCase {
    private func ts(_ seconds: UInt32, _ increment: UInt32 = 1) -> BSONTimestamp { BSONTimestamp(seconds: seconds, increment: increment) }

    func testAnOplogStartingAfterTheSeedMeansLost() {
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, 5), oldest: ts(1000, 7), copyLeft: nil), .lost, "same second, later entry")
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, 5), oldest: ts(1000, 6), copyLeft: nil), .holds, "the token may be one tick newer")
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, .max), oldest: ts(1001, 0), copyLeft: nil), .holds)
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, .max), oldest: ts(1001, 1), copyLeft: nil), .lost)
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, 5), oldest: ts(2000), copyLeft: .seconds(1)), .lost)
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000, 5), oldest: ts(1000, 5), copyLeft: nil), .holds, "the seed is the oldest entry: still there")
        XCTAssertEqual(SeedRetention.judge(seed: ts(1000), oldest: nil, copyLeft: .seconds(99_999)), .unknown, "an unreadable oplog proves nothing")
    }

    func testACopyOutlastingTheSeedsLeadIsAtRisk() {
        // The seed is 1,000 s newer than the oldest entry: it leaves the oplog in about 1,000 s.
        XCTAssertEqual(SeedRetention.judge(seed: ts(11_000), oldest: ts(10_000), copyLeft: .seconds(500)), .holds)
        XCTAssertEqual(SeedRetention.judge(seed: ts(11_000), oldest: ts(10_000), copyLeft: .seconds(900)),
                       .atRisk(copyLeft: .seconds(900), seedLeft: .seconds(1000)), "less than the margin to spare")
        XCTAssertEqual(SeedRetention.judge(seed: ts(11_000), oldest: ts(10_000), copyLeft: nil), .holds, "no pace yet")
    }

    func testPaceComesFromRowsSinceTheFirstSample() {
        var pace = CopyPace()
        let t0 = ContinuousClock.now
        XCTAssertNil(pace.remaining(rowsDone: 1_000, rowsTotal: 10_000, now: t0), "one sample is no pace")
        XCTAssertNil(pace.remaining(rowsDone: 1_000, rowsTotal: 10_000, now: t0 + .seconds(10)), "no rows since: no pace")
        // 2,000 rows in 20 s: the 7,000 left take 70 s.
        XCTAssertEqual(pace.remaining(rowsDone: 3_000, rowsTotal: 10_000, now: t0 + .seconds(20)), .seconds(70))
        XCTAssertEqual(pace.remaining(rowsDone: 12_000, rowsTotal: 10_000, now: t0 + .seconds(30)), .zero, "past the estimate")
    }
}
