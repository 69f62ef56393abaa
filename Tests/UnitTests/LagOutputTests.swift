import BSON
import Changes
import Foundation
@testable import mongoshift
@testable import Replication
import XCTest

/// Issue 18 (first run): `lag` shows times people can read — cluster times and `last_error_at` as ISO-8601 UTC,
/// in the table and in JSON.
final class LagOutputTests: XCTestCase {
    func testClusterTimesAndErrorTimesAreISO() throws {
        let ts = BSONTimestamp(seconds: 1_796_422_237, increment: 3)
        XCTAssertEqual(ts.readable, "2026-12-04T22:10:37Z #3")
        let position = StreamPosition.changeStream(ChangeStreamPosition(resumeToken: ["_data": "82"], clusterTime: ts))
        XCTAssertEqual(position.description, "cluster time 2026-12-04T22:10:37Z #3")

        var lag = StreamLag(name: "apps", direction: "mongo_to_redshift", phase: "streaming")
        lag.appliedPosition = position.description
        lag.lastError = "connection refused"
        lag.lastErrorAt = 1_796_422_237.125
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Mongoshift.Lag.json([lag]).utf8)) as? [String: Any])
        let stream = try XCTUnwrap((json["streams"] as? [[String: Any]])?.first)
        XCTAssertEqual(stream["last_error_at"] as? String, "2026-12-04T22:10:37.125Z")
        XCTAssertEqual(stream["applied_position"] as? String, "cluster time 2026-12-04T22:10:37Z #3")
        lag.resumeTokenAgeSeconds = 12
        lag.oplogWindowSeconds = 11_520
        let table = Mongoshift.Lag.table([lag])
        XCTAssertTrue(table.contains("2026-12-04T22:10:37.125Z connection refused"), table)
        XCTAssertTrue(table.contains("TOKEN AGE / OPLOG") && table.contains("12s / 3h12m"), "how close the token is to the oplog's end:\n\(table)")
    }

    /// `--max-lag` over streams: a snapshot-only stream (no watermark) that finished has no lag and never alerts
    /// (it alerted forever); one still copying, a failed one, or a tailed one with unknown lag does.
    func testMaxLagIgnoresFinishedSnapshotOnlyStreams() {
        var tailed = StreamLag(name: "orders", direction: "redshift_to_mongo", phase: "streaming")
        tailed.lagSeconds = 2
        let copied = StreamLag(name: "archive", direction: "redshift_to_mongo", phase: "streaming")
        let copying = StreamLag(name: "big", direction: "redshift_to_mongo", phase: "snapshotting 1/4 partitions")
        let unknown = StreamLag(name: "apps", direction: "mongo_to_redshift", phase: "streaming")
        let over = Mongoshift.Lag.over([tailed, copied, copying, unknown], threshold: 60, untailed: ["archive", "big"]).map(\.name)
        XCTAssertEqual(over, ["big", "apps"])
    }

    /// An integer watermark's lag is in units (sequence numbers): it was reported as `lag_seconds` and judged
    /// against `--max-lag` in seconds. Now `lag_units`, judged by `--max-lag-units` only.
    func testIntegerWatermarkLagIsInUnitsAndJudgedAsSuch() throws {
        var sequence = StreamLag(name: "events", direction: "redshift_to_mongo", phase: "streaming")
        sequence.lagUnits = 1000
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Mongoshift.Lag.json([sequence]).utf8)) as? [String: Any])
        let stream = try XCTUnwrap((json["streams"] as? [[String: Any]])?.first)
        XCTAssertEqual(stream["lag_units"] as? Int, 1000)
        XCTAssertTrue(stream["lag_seconds"] is NSNull)
        XCTAssertTrue(Mongoshift.Lag.table([sequence]).contains("1000 units"))
        XCTAssertEqual(Mongoshift.Lag.over([sequence], threshold: 300, untailed: []).map(\.name), [], "seconds say nothing about a sequence")
        XCTAssertEqual(Mongoshift.Lag.over([sequence], threshold: 300, maxUnits: 5000, untailed: []).map(\.name), [])
        XCTAssertEqual(Mongoshift.Lag.over([sequence], threshold: nil, maxUnits: 500, untailed: []).map(\.name), ["events"])
        XCTAssertEqual(WatermarkLag.lag(head: .init(text: "5000", isInteger: true), applied: "4000"), .units(1000))
        XCTAssertEqual(WatermarkLag.lag(head: .init(text: nil, isInteger: true), applied: nil), .units(0), "an empty table is not behind")
        XCTAssertEqual(WatermarkLag.lag(head: .init(text: "2026-12-04 10:00:05+00", isInteger: false), applied: "2026-12-04 10:00:00+00"), .seconds(5))
    }
}
