@testable import MongoClient
@testable import Replication
import XCTest

/// libmongoc reports a refused login as a client error (`MONGOC_ERROR_CLIENT` = 1, `MONGOC_ERROR_CLIENT_AUTHENTICATE`
/// = 11, "Authentication failed"), not as the server's code 18. It was read as an internal error: exit 4 where a
/// refused login is documented as exit 3, and a `run` stream marked failed instead of retried like PostgreSQL's.
final class MongoErrorClassificationTests: XCTestCase {
    func testARefusedLoginIsAnAuthenticationErrorThatDaemonsRetry() {
        let (code, serverCode) = MongoClient.classify(domain: 1, code: 11)
        XCTAssertEqual(code, .authentication)
        XCTAssertEqual(serverCode, 0)
        let refused = MongoError(code: code, serverCode: serverCode, message: "Authentication failed.")
        XCTAssertTrue(RetryPolicy.isRefusedConnection(refused))
        XCTAssertFalse(RetryPolicy.isTransient(refused), "not transient: one-shot commands fail fast")
        // Other client errors stay client errors; the network and server selection are connection errors.
        XCTAssertEqual(MongoClient.classify(domain: 1, code: 8).0, .client)
        XCTAssertEqual(MongoClient.classify(domain: 2, code: 4).0, .connection)
        XCTAssertEqual(MongoClient.classify(domain: 15, code: 13053).0, .connection)
        XCTAssertEqual(MongoClient.classify(domain: 17, code: 11000).0, .server)
        XCTAssertEqual(MongoClient.classify(domain: 17, code: 11000).1, 11000)
    }

    /// A read on mongos while a shard elects its primary fails with 133 (or 134 under majority reads): the drivers
    /// retry those reads; mongoshift marked the stream failed.
    func testShardElectionReadErrorsAreTransient() {
        for code in [133, 134, 202, 279] {
            XCTAssertTrue(MongoError(code: .server, serverCode: code, message: "x").isTransient, "\(code)")
        }
        XCTAssertFalse(MongoError(code: .server, serverCode: 2, message: "BadValue").isTransient)
    }
}

/// `check` called a sharded cluster "not a replica set" (mongos's `hello` names no set), though change streams
/// run through mongos.
final class ChangeStreamSupportTests: XCTestCase {
    func testMongosAndReplicaSetsServeChangeStreamsAStandaloneDoesNot() {
        XCTAssertTrue(ConfigCheck.servesChangeStreams(hello: ["isWritablePrimary": true, "setName": "rs0"]))
        XCTAssertTrue(ConfigCheck.servesChangeStreams(hello: ["isWritablePrimary": true, "msg": "isdbgrid"]))
        XCTAssertFalse(ConfigCheck.servesChangeStreams(hello: ["isWritablePrimary": true]))
    }
}
