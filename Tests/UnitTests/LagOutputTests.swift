import BSON
import Changes
import Foundation
@testable import mongoshift
import Replication
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
}
