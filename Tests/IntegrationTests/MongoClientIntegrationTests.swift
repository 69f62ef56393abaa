import BSON
import MongoClient
import TestSupport
import XCTest

final class MongoClientIntegrationTests: XCTestCase {
    var client: MongoClient!
    var database = ""

    override func setUp() async throws {
        client = try MongoClient(url: try TestServers.requireMongo())
        database = TestServers.uniqueName("client")
    }

    override func tearDown() async throws {
        _ = try? await client?.command(["dropDatabase": 1], database: database)
    }

    func testEveryTypeRoundTripsThroughTheServer() async throws {
        var doc = Document()
        doc.append("_id", .int64(1))
        for (key, value) in BSONSamples.everyType where key != "undefined" { doc.append(key, value) }
        let result = try await client.bulkWrite(database: database, collection: "types", [.insert(doc)])
        XCTAssertEqual(result.inserted, 1)
        let back = try await client.findAll(database: database, collection: "types")
        XCTAssertEqual(back.first?.bytes, doc.bytes, "byte-identical round trip")
    }

    func testUnorderedBulkReportsPerItemErrorsAndWritesTheRest() async throws {
        let ops: [WriteOperation] = [
            .insert(["_id": 1, "v": "a"]), .insert(["_id": 1, "v": "dup"]), .insert(["_id": 2, "v": "b"]),
            .replace(filter: ["_id": 3], replacement: ["_id": 3, "v": "c"], upsert: true),
            .delete(filter: ["_id": 2]),
        ]
        let result = try await client.bulkWrite(database: database, collection: "bulk", ops)
        XCTAssertEqual(result.writeErrors.map(\.index), [1])
        XCTAssertEqual(result.writeErrors.first?.code, 11000)
        XCTAssertEqual(result.inserted, 2)
        XCTAssertEqual(result.upserted, 1)
        XCTAssertEqual(result.removed, 1)
        let count = try await client.count(database: database, collection: "bulk")
        XCTAssertEqual(count, 2)
    }

    func testKeysetFindStreamsInOrder() async throws {
        _ = try await client.bulkWrite(database: database, collection: "keys", (1...250).map { .insert(["_id": .int32(Int32($0))]) })
        let page = try await client.findAll(database: database, collection: "keys", filter: ["_id": .document(["$gt": 100, "$lte": 200])],
                                            sort: ["_id": 1], limit: 50)
        XCTAssertEqual(page.map { $0["_id"] }, (101...150).map { BSON.int32(Int32($0)) })
    }

    func testChangeStreamResumesFromPersistedToken() async throws {
        let stream = try await client.watch(database: database, collection: "cs", options: ["fullDocument": "updateLookup", "maxAwaitTimeMS": 200])
        let idle = try await stream.nextBatch()
        XCTAssertTrue(idle.events.isEmpty)
        XCTAssertNotNil(idle.resumeToken, "postBatchResumeToken even when idle")
        _ = try await client.bulkWrite(database: database, collection: "cs", [.insert(["_id": 1, "v": 1]), .insert(["_id": 2, "v": 2])])
        _ = try await client.bulkWrite(database: database, collection: "cs", [.update(filter: ["_id": 1], update: ["$set": .document(["v": 10])], upsert: false),
                                                                           .delete(filter: ["_id": 2])])
        var events: [Document] = []
        var token: Document?
        for _ in 0..<10 where events.count < 4 {
            let batch = try await stream.nextBatch()
            events += batch.events
            token = batch.resumeToken
        }
        XCTAssertEqual(events.compactMap { $0["operationType"]?.stringValue }, ["insert", "insert", "update", "delete"])
        XCTAssertEqual(events[2]["fullDocument"], .document(["_id": 1, "v": 10]))
        // Resume after the second event: exactly the last two come again.
        let resumeAfter = try XCTUnwrap(events[1]["_id"]?.documentValue)
        let resumed = try await client.watch(database: database, collection: "cs", options: ["resumeAfter": .document(resumeAfter), "maxAwaitTimeMS": 200])
        var again: [Document] = []
        for _ in 0..<10 where again.count < 2 { again += try await resumed.nextBatch().events }
        XCTAssertEqual(again.compactMap { $0["operationType"]?.stringValue }, ["update", "delete"])
        XCTAssertNotNil(token)
    }

    func testGarbageResumeTokenIsHistoryLost() async throws {
        do {
            let stream = try await client.watch(database: database, collection: "cs", options: ["resumeAfter": .document(["_data": "garbage!"])])
            _ = try await stream.nextBatch()
            XCTFail("expected an error")
        } catch let error as MongoError {
            XCTAssertTrue(error.isHistoryLost, "\(error)")
        }
    }

    func testUnreachableServerIsAConnectionError() async throws {
        let c = try MongoClient(url: "mongodb://u:Canary-Pa55word@127.0.0.1:1/?serverSelectionTimeoutMS=500")
        do {
            try await c.ping()
            XCTFail("expected failure")
        } catch let error as MongoError {
            XCTAssertEqual(error.code, .connection)
            XCTAssertTrue(error.isTransient)
            XCTAssertFalse("\(error)".contains("Canary-Pa55word"))
            XCTAssertFalse(c.redactedURL.contains("Canary-Pa55word"))
        }
    }
}
