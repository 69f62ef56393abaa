import BSON
import Foundation
import MongoClient
import TestSupport
import XCTest

/// `verify` pages both sides (issue "A local Redshift…" fix 5: it used to hold the whole target table in client
/// memory): its peak RSS stays flat when the table grows tenfold.
final class VerifyMemoryTests: IntegrationTestCase {
    override var namePrefix: String { "vm" }

    /// Fills collection and table with `rows` documents of ~4 KB, then returns verify's peak RSS.
    func verifyPeakRSS(rows: Int, collection: String) async throws -> Int {
        let payload = String(repeating: "p", count: 4000)
        for start in stride(from: 0, to: rows, by: 5000) {
            _ = try await mongo.bulkWrite(database: database, collection: collection, (start..<min(rows, start + 5000)).map {
                .insert(["_id": .int32(Int32($0)), "payload": .string(payload)])
            })
        }
        let config = directory + "/\(collection).yaml"
        try """
        state: \(directory)/state-\(collection)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        streams:
          - name: \(collection)
            from: { collection: \(collection) }
            to: { table: \(table).\(collection) }
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        let verify = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("\(rows) rows checked, 0 differences"), verify.stdout)
        let match = try XCTUnwrap(verify.stdout.firstMatch(of: /peak RSS (\d+) MiB/), verify.stdout)
        return Int(match.1)!
    }

    func testVerifyPeakRSSIsFlatFrom2kTo20kRows() async throws {
        let small = try await verifyPeakRSS(rows: 2_000, collection: "small")
        let large = try await verifyPeakRSS(rows: 20_000, collection: "large")  // 80 MB of payload on each side
        print("peak RSS of verify: 2,000 rows \(small) MiB, 20,000 rows \(large) MiB")
        XCTAssertLessThan(large, small + 30, "verify's memory must not grow with the table")
    }
}
