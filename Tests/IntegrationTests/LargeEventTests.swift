import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Change events over MongoDB's 16 MiB limit: split with `$changeStreamSplitLargeEvent` and reassembled where the
/// server supports it (7.0, 6.0.9); where it does not, the event is read without its documents and the document
/// by its key — the stream goes on.
final class LargeEventTests: IntegrationTestCase {
    override var namePrefix: String { "large" }
    static let mib = 1 << 20

    func config(_ url: String, schema: String) throws -> String {
        try writeStreamsConfig("  - { name: big, from: { collection: big }, to: { table: \(schema).big } }\n", mongo: url)
    }

    /// An update whose event carries a 7 MiB updateDescription and a 14 MiB fullDocument: over 16 MiB.
    func makeLargeUpdate(_ client: MongoClient) async throws {
        _ = try await client.bulkWrite(database: database, collection: "big", [.insert(["_id": 1, "a": .string(String(repeating: "a", count: 7 * Self.mib))])])
        _ = try await client.bulkWrite(database: database, collection: "big",
                                       [.update(filter: ["_id": 1], update: ["$set": .document(["b": .string(String(repeating: "b", count: 7 * Self.mib))])], upsert: false)])
        _ = try await client.bulkWrite(database: database, collection: "big", [.insert(["_id": 2, "a": "after"])])
    }

    func testSplitEventsAreReassembled() async throws {
        let schema = TestServers.uniqueName("lg")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        _ = try await mongo.bulkWrite(database: database, collection: "big", [.insert(["_id": 0, "a": "seed"])])
        let (process, _) = try startRun(try config(mongoURL, schema: schema))
        try await waitFor("snapshot") { self.phase("big") == "streaming" }
        try await makeLargeUpdate(mongo)
        try await waitFor("the insert after the large update", timeout: 120) {
            ((try? await self.connection.query("SELECT count(*)::text FROM \(schema).big WHERE _id = 2"))?.rows.first?.first ?? nil) == "1"
        }
        XCTAssertEqual(phase("big"), "streaming")
        stop(process)
        // The reassembled update reached the applier whole: its 7 MiB strings are over the table's 65,535-byte
        // VARCHAR and dead-lettered as such — never as an event the stream could not read.
        let letters = (try? String(contentsOfFile: state + "/deadletter/big.jsonl", encoding: .utf8)) ?? ""
        XCTAssertFalse(letters.contains("16 MiB"), letters)
        XCTAssertTrue(letters.contains("exceeds the 65535-byte limit"), letters)
        let columns = try await connection.query("SELECT * FROM \(schema).big LIMIT 0").columns.map(\.name)
        XCTAssertTrue(columns.contains("b"), "the field only the split update carried made its column: \(columns)")
    }

    /// A server that cannot split events (before 7.0, 6.0.9) fails the stream on the oversized update; its key was
    /// dead-lettered and the row left as it was until the document changed again — though the document itself (at
    /// most 16 MiB) could be read. It is read by key now and reaches the applier whole.
    func testWithoutSplittingTheDocumentIsReadByKeyAndTheStreamGoesOn() async throws {
        let schema = TestServers.uniqueName("lg")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        let (url, _) = try await startPrivateMongo(arguments: ["--server-version", "6.0.5"])
        let old = try MongoClient(url: url)
        _ = try await old.bulkWrite(database: database, collection: "big", [.insert(["_id": 0, "a": "seed"])])
        let (process, _) = try startRun(try config(url, schema: schema))
        try await waitFor("snapshot") { self.phase("big") == "streaming" }
        try await makeLargeUpdate(old)
        try await waitFor("the insert after the large event", timeout: 120) {
            ((try? await self.connection.query("SELECT count(*)::text FROM \(schema).big WHERE _id = 2"))?.rows.first?.first ?? nil) == "1"
        }
        stop(process)
        // The document reached the applier whole: its 7 MiB strings are over the table's 65,535-byte VARCHAR and
        // dead-lettered as such by the applier — not as an event the stream could not read.
        let letters = (try? String(contentsOfFile: state + "/deadletter/big.jsonl", encoding: .utf8)) ?? ""
        XCTAssertFalse(letters.contains("16 MiB"), letters)
        XCTAssertTrue(letters.contains("exceeds the 65535-byte limit"), letters)
        let columns = try await connection.query("SELECT * FROM \(schema).big LIMIT 0").columns.map(\.name)
        XCTAssertTrue(columns.contains("b"), "the field only the oversized update carried made its column: \(columns)")
        XCTAssertEqual(phase("big"), "streaming")
    }
}
