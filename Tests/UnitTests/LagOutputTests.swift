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
        let table = Mongoshift.Lag.table([lag])
        XCTAssertTrue(table.contains("2026-12-04T22:10:37.125Z connection refused"), table)
    }
}
