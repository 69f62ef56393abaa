import BSON
@testable import Replication
import XCTest

/// `check`'s reading of a Mongo login's privileges (`connectionStatus`, `showPrivileges`).
final class MongoPrivilegesTests: XCTestCase {
    private func status(users: Int, _ privileges: [(Document, [String])]) -> Document {
        ["authInfo": .document([
            "authenticatedUsers": .array((0..<users).map { _ in .document(["user": "etl", "db": "admin"]) }),
            "authenticatedUserPrivileges": .array(privileges.map { .document(["resource": .document($0.0), "actions": .array($0.1.map(BSON.string))]) }),
        ]), "ok": 1]
    }

    private func stream(_ spec: (direction: StreamConfig.Direction, collection: String)) -> StreamConfig {
        StreamConfig(name: "s", direction: spec.direction, table: TableName(schema: "public", name: "t"), collection: spec.collection,
                     defaults: StreamDefaults())
    }

    func testNoLoginMeansNothingToJudge() {
        XCTAssertNil(MongoPrivileges(connectionStatus: status(users: 0, [])), "authorization off: everything is allowed")
        XCTAssertNil(MongoPrivileges(connectionStatus: ["ok": 1]))
    }

    func testResourcesMatchAsMongoDBMatchesThem() throws {
        let p = try XCTUnwrap(MongoPrivileges(connectionStatus: status(users: 1, [
            (["db": "app", "collection": "orders"], ["find", "changeStream"]),
            (["db": "app", "collection": ""], ["insert"]),
            (["db": "", "collection": "audit"], ["remove"]),
            (["db": "", "collection": ""], ["listIndexes"]),
            (["cluster": true], ["serverStatus"]),
        ])))
        XCTAssertTrue(p.allows("find", db: "app", collection: "orders"))
        XCTAssertFalse(p.allows("find", db: "app", collection: "users"), "another collection")
        XCTAssertFalse(p.allows("find", db: "other", collection: "orders"), "another database")
        XCTAssertTrue(p.allows("insert", db: "app", collection: "users"), "every collection of app")
        XCTAssertFalse(p.allows("insert", db: "app", collection: "system.views"), "but not its system collections")
        XCTAssertTrue(p.allows("insert", db: "app", collection: nil), "and the database itself")
        XCTAssertFalse(p.allows("find", db: "app", collection: nil), "a collection's grant is not the database's")
        XCTAssertTrue(p.allows("remove", db: "any", collection: "audit"))
        XCTAssertTrue(p.allows("listIndexes", db: "any", collection: "thing"))
        XCTAssertFalse(p.allows("serverStatus", db: "app", collection: nil), "the cluster resource names no database")
        let any = try XCTUnwrap(MongoPrivileges(connectionStatus: status(users: 1, [(["anyResource": true], ["find"])])))
        XCTAssertTrue(any.allows("find", db: "x", collection: "system.y"))
    }

    func testEachStreamNamesWhatItLacks() throws {
        let p = try XCTUnwrap(MongoPrivileges(connectionStatus: status(users: 1, [
            (["db": "app", "collection": "events"], ["find"]),
            (["db": "app", "collection": "orders"], ["find", "insert", "update", "remove"]),
        ])))
        let source = p.problems(for: stream((.mongoToRedshift, "events")), database: "app", tombstones: "mongoshift_tombstones")
        XCTAssertEqual(source.count, 1, "\(source)")
        XCTAssertTrue(source[0].contains("changeStream on app.events") && !source[0].contains("find"), source[0])
        let target = p.problems(for: stream((.redshiftToMongo, "orders")), database: "app", tombstones: "mongoshift_tombstones")
        XCTAssertEqual(target, ["the Mongo login lacks find, insert, update, remove on app.mongoshift_tombstones: deletes keep version tombstones there"])
    }
}
