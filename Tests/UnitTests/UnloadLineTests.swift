import PostgresClient
@testable import Replication
import XCTest

/// UNLOAD's JSON lines decoded into the text values the SELECT path reads, with one decoder reused line to line.
final class UnloadLineTests: XCTestCase {
    let columns = [
        PostgresColumn(name: "id", typeOID: PostgresType.int8),
        PostgresColumn(name: "Name", typeOID: PostgresType.varchar),
        PostgresColumn(name: "paid", typeOID: PostgresType.bool),
        PostgresColumn(name: "amount", typeOID: PostgresType.numeric),
        PostgresColumn(name: "attrs", typeOID: PostgresType.redshiftSuper),
        PostgresColumn(name: "note", typeOID: PostgresType.varchar),
    ]

    private func decode(_ decoder: UnloadLineDecoder, _ line: String) throws -> [String?] {
        var line = line
        try line.withUTF8 { try decoder.decode($0) }
        return (0..<decoder.columnCount).map { decoder.string($0) }
    }

    func testValuesAreTheSelectPathsText() throws {
        let decoder = UnloadLineDecoder(columns: columns)
        let values = try decode(decoder, #"{"id":7,"name":"tab\there \"q\" \u00e9\ud83d\ude00","paid":true,"amount":12.50,"attrs":{"a":[1,"x\"y"]},"note":null}"#)
        XCTAssertEqual(values, ["7", "tab\there \"q\" é😀", "t", "12.50", #"{"a":[1,"x\"y"]}"#, nil])
    }

    func testMembersInAnyOrderMissingOrUnknownAndTheLastOfARepeatedKey() throws {
        let decoder = UnloadLineDecoder(columns: columns)
        let values = try decode(decoder, #"{"note":"n","extra":[1,2],"paid":false,"id":1,"id":2,"attrs":"text in super"}"#)
        XCTAssertEqual(values, ["2", nil, "f", nil, #""text in super""#, "n"], "a SUPER string keeps its JSON text")
    }

    func testALineLeavesNothingOfThePreviousOne() throws {
        let decoder = UnloadLineDecoder(columns: columns)
        _ = try decode(decoder, #"{"id":1,"name":"a long name that grows the buffer \#(String(repeating: "x", count: 9000))","note":"first"}"#)
        let second = try decode(decoder, #"{"id":2}"#)
        XCTAssertEqual(second, ["2", nil, nil, nil, nil, nil])
        let third = try decode(decoder, #"{"id":3,"name":"b"}"#)
        XCTAssertEqual(third[1], "b")
    }

    func testEscapedMemberNamesMatchTheirColumn() throws {
        let decoder = UnloadLineDecoder(columns: columns)
        XCTAssertEqual(try decode(decoder, #"{"\u0069d":5}"#)[0], "5")
    }

    func testMalformedLinesAreErrors() {
        let decoder = UnloadLineDecoder(columns: columns)
        // A high surrogate followed by something other than a low one (it used to overflow and trap).
        for line in [#"{"id":1"#, #"{"id":}"#, #"{"name":"unterminated}"#, #"{"name":"bad \u12 escape"}"#, #"["id"]"#, #"{"id":tru}"#,
                     #"{"name":"\ud800\u0041"}"#, #"{"name":"\ud83d\ue000"}"#, #"{"\ud800\u0041":1}"#] {
            XCTAssertThrowsError(try decode(decoder, line), line)
        }
    }
}
