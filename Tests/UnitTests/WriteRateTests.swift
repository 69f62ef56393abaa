import MongoClient
@testable import Replication
import XCTest

/// `max_writes_per_second` pacing and what counts as throttling.
final class WriteRateTests: XCTestCase {
    func testScheduleSpacesWritesByTheirCount() {
        var schedule = WriteSchedule()
        let t0 = ContinuousClock.now
        XCTAssertEqual(schedule.reserve(10, perSecond: 100, now: t0), .zero, "the first bulk goes at once")
        XCTAssertEqual(schedule.reserve(10, perSecond: 100, now: t0), .milliseconds(100))
        XCTAssertEqual(schedule.reserve(50, perSecond: 100, now: t0 + .milliseconds(50)), .milliseconds(150))
        // An idle stretch gives no credit: after a pause the schedule starts from now.
        XCTAssertEqual(schedule.reserve(10, perSecond: 100, now: t0 + .seconds(5)), .zero)
        XCTAssertEqual(WriteRateLimiter(perSecond: 25).chunk, 2)
        XCTAssertEqual(WriteRateLimiter(perSecond: 5).chunk, 1)
    }

    func testThrottlingErrorsAreTransient() {
        XCTAssertTrue(MongoError(code: .server, serverCode: 16500, message: "Request rate is large").isTransient)
        XCTAssertTrue(MongoError(code: .server, serverCode: 462, message: "overloaded", labels: ["SystemOverloadedError"]).isThrottled)
        XCTAssertFalse(MongoError(code: .server, serverCode: 11000, message: "E11000").isTransient)
    }

    /// A shard's primary stepping down fails only the bulk items routed to it (mongos reports them as write
    /// errors): the batch is retried, never dead-lettered; an item the server refuses for good still is.
    func testItemsFailedForAPassingReasonMakeTheBatchRetry() {
        var result = BulkWriteResult()
        for code in [189, 10107, 11602, 91, 13388, 112] {
            result.writeErrors = [BulkWriteError(index: 2, code: 11000, message: "E11000"), BulkWriteError(index: 3, code: code, message: "not primary")]
            XCTAssertThrowsError(try MongoApplier.checkTransientItems(result), "code \(code)") { error in
                XCTAssertTrue(RetryPolicy.isTransient(error), "\(error)")
            }
        }
        result.writeErrors = [BulkWriteError(index: 3, code: 121, message: "Document failed validation"), BulkWriteError(index: 4, code: 11000, message: "E11000")]
        XCTAssertNoThrow(try MongoApplier.checkTransientItems(result), "validation refuses the same document every time: dead-lettered")
    }

    func testThrottledItemsOfABulkMakeTheBatchRetryInsteadOfDeadLettering() {
        var result = BulkWriteResult()
        result.writeErrors = [BulkWriteError(index: 3, code: 16500, message: "Request rate is large. RetryAfterMs=12")]
        XCTAssertThrowsError(try MongoApplier.checkThrottling(result)) { error in
            XCTAssertTrue((error as? MongoError)?.isTransient ?? false, "\(error)")
        }
        result.writeErrors = [BulkWriteError(index: 3, code: 11000, message: "E11000")]
        XCTAssertNoThrow(try MongoApplier.checkThrottling(result), "a duplicate key is the version guard's answer, not throttling")
        var merged = BulkWriteResult()
        merged.append(result, offset: 100)
        XCTAssertEqual(merged.writeErrors.first?.index, 103)
    }
}
