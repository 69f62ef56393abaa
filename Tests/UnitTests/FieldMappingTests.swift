import BSON
import Replication
import XCTest

/// `columns: {include, exclude, rename}` on documents (Mongo → Redshift) and its checks.
final class FieldMappingTests: XCTestCase {
    let doc: Document = ["_id": 7, "name": "ada", "ssn": "123-45-6789", "card": .document(["number": "4111", "brand": "visa"]), "age": 36]

    func testExcludeRenameAndNestedPaths() {
        let mapping = FieldMapping(exclude: ["ssn", "card.number"], rename: ["name": "full_name"])
        XCTAssertEqual(mapping.apply(doc), ["_id": 7, "full_name": "ada", "card": .document(["brand": "visa"]), "age": 36])
    }

    func testExcludesReachIntoArraysAndARenameWinsOverAFieldOfItsNewName() {
        let doc: Document = ["_id": 1, "cards": .array([.document(["number": "4111", "brand": "visa"]), .document(["number": "5500"])]),
                             "name": "ada", "full_name": "old"]
        let mapping = FieldMapping(exclude: ["cards.number"], rename: ["name": "full_name"])
        XCTAssertEqual(mapping.apply(doc), ["_id": 1, "cards": .array([.document(["brand": "visa"]), .document([:])]), "full_name": "ada"])
    }

    func testIncludeKeepsIDAlways() {
        XCTAssertEqual(FieldMapping(include: ["age"]).apply(doc), ["_id": 7, "age": 36])
        XCTAssertEqual(FieldMapping(include: ["age", "card"], exclude: ["card.number"]).apply(doc),
                       ["_id": 7, "card": .document(["brand": "visa"]), "age": 36])
        XCTAssertEqual(FieldMapping.identity.apply(doc), doc)
    }

    func testProblems() {
        XCTAssertEqual(FieldMapping(rename: ["a": "x", "b": "x"]).problems(reserved: ["_id"]), ["two fields renamed to \"x\""])
        XCTAssertFalse(FieldMapping(rename: ["a": "_id"]).problems(reserved: ["_id"]).isEmpty)
        XCTAssertFalse(FieldMapping(rename: ["a": "b.c"]).problems(reserved: ["_id"]).isEmpty)
        XCTAssertFalse(FieldMapping(exclude: ["_id"]).problems(reserved: ["_id"]).isEmpty)
        XCTAssertEqual(FieldMapping(include: ["a"], exclude: ["b.c"], rename: ["a": "z"]).problems(reserved: ["_id"]), [])
    }
}
