import BSON
@testable import Replication
import XCTest

/// `$changeStreamSplitLargeEvent` fragments become one event with the last fragment's token.
final class EventReassemblyTests: XCTestCase {
    func testFragmentsMergeIntoOneEventWithTheLastToken() {
        var pending: Document?
        let whole: Document = ["_id": .document(["_data": "01"]), "operationType": "insert"]
        XCTAssertEqual(ChangeStreamTailer.reassemble(whole, into: &pending), whole, "an unsplit event passes as it is")
        let first: Document = ["_id": .document(["_data": "02"]), "splitEvent": .document(["fragment": 1, "of": 3]),
                               "operationType": "update", "documentKey": .document(["_id": 1])]
        let second: Document = ["_id": .document(["_data": "03"]), "splitEvent": .document(["fragment": 2, "of": 3]),
                                "updateDescription": .document(["updatedFields": .document(["b": "big"])])]
        let third: Document = ["_id": .document(["_data": "04"]), "splitEvent": .document(["fragment": 3, "of": 3]),
                               "fullDocument": .document(["_id": 1, "b": "big"])]
        XCTAssertNil(ChangeStreamTailer.reassemble(first, into: &pending))
        XCTAssertNil(ChangeStreamTailer.reassemble(second, into: &pending))
        XCTAssertNotNil(pending, "fragments wait for the rest")
        let merged = ChangeStreamTailer.reassemble(third, into: &pending)
        XCTAssertNil(pending)
        XCTAssertEqual(merged?["operationType"], "update")
        XCTAssertEqual(merged?.value(at: "fullDocument.b"), "big")
        XCTAssertEqual(merged?.value(at: "updateDescription.updatedFields.b"), "big")
        XCTAssertEqual(merged?["_id"], .document(["_data": "04"]), "resuming after the last fragment passes the whole event")
        XCTAssertNil(merged?["splitEvent"])
    }
}
