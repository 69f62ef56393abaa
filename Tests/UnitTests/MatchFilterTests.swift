import BSON
import Replication
import XCTest

/// `match:` evaluated with MongoDB's rules for the operators it accepts.
final class MatchFilterTests: XCTestCase {
    func match(_ filter: Document, _ doc: Document) throws -> Bool { try MatchFilter(filter).matches(doc) }

    func testEqualityArraysAndPaths() throws {
        XCTAssertTrue(try match(["status": "active"], ["status": "active"]))
        XCTAssertFalse(try match(["status": "active"], ["status": "closed"]))
        XCTAssertTrue(try match(["tags": "red"], ["tags": .array(["blue", "red"])]), "an array matches by an element")
        XCTAssertTrue(try match(["a.b": 1], ["a": .document(["b": .int64(1)])]), "numbers compare by value across types")
        XCTAssertTrue(try match(["items.sku": "x"], ["items": .array([.document(["sku": "y"]), .document(["sku": "x"])])]))
        XCTAssertTrue(try match(["gone": .null], ["other": 1]), "null matches a missing field")
    }

    func testOperatorsAndBrackets() throws {
        let doc: Document = ["n": 5, "s": "m", "d": .datetime(1000)]
        XCTAssertTrue(try match(["n": .document(["$gt": 4, "$lte": .double(5)])], doc))
        XCTAssertFalse(try match(["n": .document(["$gt": "4"])], doc), "no comparison across brackets")
        XCTAssertTrue(try match(["s": .document(["$in": .array(["a", "m"])])], doc))
        XCTAssertTrue(try match(["s": .document(["$nin": .array(["a"])]), "x": .document(["$exists": false])], doc))
        XCTAssertTrue(try match(["d": .document(["$gte": .datetime(1000)])], doc))
        XCTAssertTrue(try match(["$or": .array([.document(["n": 1]), .document(["s": "m"])])], doc))
        XCTAssertFalse(try match(["$nor": .array([.document(["n": 5])])], doc))
        XCTAssertTrue(try match(["n": .document(["$ne": 6])], doc))
    }

    func testUnsupportedOperatorsAreRefused() {
        XCTAssertThrowsError(try MatchFilter(["n": .document(["$regex": "x"])]))
        XCTAssertThrowsError(try MatchFilter(["$where": "this.n > 1"]))
        XCTAssertThrowsError(try MatchFilter(["$and": .array([])]))
    }
}
