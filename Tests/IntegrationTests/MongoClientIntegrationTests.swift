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

    /// libmongoc keeps only a read concern's level from find's options: `afterClusterTime` reaches the server
    /// through a causally consistent session. A time past the server's cluster time is refused (72), so a find
    /// that succeeded with one would show the field had been dropped.
    func testAfterClusterTimeReachesTheServer() async throws {
        _ = try await client.bulkWrite(database: database, collection: "rc", [.insert(["_id": 1])])
        let reply = try await client.command(["ping": 1], database: database)
        guard case .timestamp(let now)? = reply["operationTime"] else { return XCTFail("no operationTime: \(reply)") }
        let read = try await client.findAll(database: database, collection: "rc", readConcern: MongoClient.ReadConcern(.majority, afterClusterTime: now))
        XCTAssertEqual(read.count, 1)
        let ahead = BSONTimestamp(seconds: now.seconds + 1000, increment: 1)
        do {
            _ = try await client.findAll(database: database, collection: "rc", readConcern: MongoClient.ReadConcern(.majority, afterClusterTime: ahead))
            XCTFail("a read after a cluster time the server has not reached was answered")
        } catch let error as MongoError {
            XCTAssertEqual(error.serverCode, 72, "\(error)")
        }
    }

    /// Issue "Nothing lost, nothing stuck" item 4: a bulk larger than one server batch, where one batch reports a
    /// duplicate key and another fails outright (a network error, a step-down): the failure must not hide behind
    /// the item error — the caller must learn that some writes never happened.
    func testAFailedServerBatchIsNotHiddenByItemErrorsOfAnother() async throws {
        try await client.command(["insert": "split", "documents": .array([.document(["_id": .int32(0)])])], database: database)
        var ops: [WriteOperation] = (0...100_050).map { .insert(["_id": .int32(Int32($0))]) }  // _id 0 exists: E11000 in batch 1
        ops.shuffle()
        _ = try await client.command([
            "configureFailPoint": "failCommand", "mode": .document(["skip": 1, "times": 1]),
            "data": .document(["failCommands": .array(["insert"]), "errorCode": .int32(91), "errorLabels": .array([])]),
        ], database: "admin")
        defer { Task { [client] in _ = try? await client?.command(["configureFailPoint": "failCommand", "mode": "off"], database: "admin") } }
        do {
            let result = try await client.bulkWrite(database: database, collection: "split", ops)
            XCTFail("the failed batch was hidden: \(result.inserted) inserted, \(result.writeErrors.count) item errors")
        } catch let error as MongoError {
            XCTAssertEqual(error.serverCode, 91, "\(error)")
        }
        _ = try await client.command(["configureFailPoint": "failCommand", "mode": "off"], database: "admin")
        // Retried, the bulk completes: every document once, the duplicate reported as an item error.
        let retried = try await client.bulkWrite(database: database, collection: "split", ops)
        XCTAssertEqual(retried.writeErrors.filter { $0.code == 11000 }.count, retried.writeErrors.count)
        let count = try await client.count(database: database, collection: "split")
        XCTAssertEqual(count, 100_051)
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

    /// `.skipUTF8` keeps libmongoc's default refusal of empty keys (checked by mongoshift, at any depth), per item,
    /// and sends the rest — the same outcome as libmongoc's own validation.
    func testEmptyKeysAreRefusedPerItemWithoutLibmongocValidation() async throws {
        let nested: Document = ["_id": 2, "a": .array([.document(["ok": 1]), .document(["": 1])])]
        let ops: [WriteOperation] = [
            .insert(["_id": 1, "v": "a"]), .insert(nested), .insert(["_id": 3, "": "top"]),
            .replace(filter: ["_id": 4], replacement: ["_id": 4, "d": .document(["": 0])], upsert: true),
            .replace(filter: ["_id": 5], replacement: ["_id": 5, "v": "e"], upsert: true),
        ]
        let skipped = try await client.bulkWrite(database: database, collection: "keys", ops, validation: .skipUTF8)
        let full = try await client.bulkWrite(database: database, collection: "keys_full", ops, validation: .full)
        XCTAssertEqual(skipped.writeErrors.map(\.index), [1, 2, 3])
        XCTAssertEqual(full.writeErrors.map(\.index), [1, 2, 3], "libmongoc's own validation refuses the same items")
        let count = try await client.count(database: database, collection: "keys")
        XCTAssertEqual(count, 2)
    }

    /// The bulk's document buffer (megabytes, grown by doubling) is kept for the next bulk instead of being mapped
    /// and faulted in anew (`LargeBlockCache`, installed by the executable as the process starts); a reused block
    /// carries nothing of its last use into what the server stores.
    func testLargeBulkBuffersAreKeptForTheNextBulkAndWriteCorrectly() async throws {
        LargeBlockCache.install(minimumBytes: 256 * 1024)
        func ops(_ batch: Int) -> [WriteOperation] {
            (0..<6_000).map { .insert(["_id": .int32(Int32($0)), "batch": .int32(Int32(batch)), "pad": .string(String(repeating: "x", count: 400 + batch))]) }
        }
        _ = try await client.bulkWrite(database: database, collection: "first", ops(1))
        XCTAssertGreaterThanOrEqual(LargeBlockCache.kept.blocks, 1, "the ~2.5 MB payload buffer is kept after the bulk")
        let keptBytes = LargeBlockCache.kept.bytes
        _ = try await client.bulkWrite(database: database, collection: "second", ops(2))
        XCTAssertEqual(LargeBlockCache.kept.bytes, keptBytes, "the second bulk reused the kept block instead of a new one")
        for (collection, batch) in [("first", 1), ("second", 2)] {
            let count = try await client.count(database: database, collection: collection)
            XCTAssertEqual(count, 6_000)
            let docs = try await client.findAll(database: database, collection: collection, filter: ["_id": .document(["$in": .array([0, 2_999, 5_999])])])
            XCTAssertEqual(docs.count, 3)
            for doc in docs {
                XCTAssertEqual(doc["batch"], .int32(Int32(batch)))
                XCTAssertEqual(doc["pad"], .string(String(repeating: "x", count: 400 + batch)))
            }
        }
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
