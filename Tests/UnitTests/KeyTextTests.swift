import BSON
import Foundation
@testable import Replication
import XCTest

/// `KeyText`: the text of an `_id` in a text key column is one per document — no two different `_id`s share it,
/// strings read as themselves unless they could be taken for another type's text, and it reads back.
final class KeyTextTests: XCTestCase {
    static let oid = ObjectId(hex: "6b146ecf4be695d5d7b12a2c")!
    /// Pairs of different `_id`s whose plain texts coincide, and values at the edges of each form.
    static let ids: [BSON] = [
        .int32(5), "5", .int64(10_000_000_000), "10000000000", .double(7.5), "7.5", .decimal128(Decimal128("8.25")!), "8.25",
        .objectId(oid), .string(oid.description), .bool(true), "true", .bool(false), "false", .null, "null", "",
        .datetime(1_700_000_000_000), "2023-11-14 22:13:20.000", .document(["a": .int32(1)]), #"{"a":1}"#,
        .document(["a": "1"]), .document(["a": .objectId(oid)]), .document(["a": .string(oid.description)]),
        #"{"$numberLong":"6"}"#, .int64(6), #""quoted""#, "quoted", "{", "\"", "{\"a\":\"x\"}",
        .binary(BSONBinary(subtype: 4, data: Array(0..<16))), .binary(BSONBinary(subtype: 0, data: Array(1..<17))),
        .timestamp(BSONTimestamp(seconds: 1, increment: 2)), .int64(4_294_967_298), .minKey, .maxKey,
        .timestamp(BSONTimestamp(seconds: .max, increment: .max)), .timestamp(BSONTimestamp(seconds: 0, increment: 1)),
        "a", "a ", "a  ", #""a ""#, .document(["x": .null]), .document(["x": .undefined]),
        .double(0.1), .decimal128(Decimal128("0.1")!), .double(.nan), .double(.infinity), .double(-.infinity),
        .decimal128(Decimal128("NaN")!), .decimal128(Decimal128("12345678901234567890123")!), .int64(.min), .int64(.max),
        .double(0x1p63), .double(-0x1p64), .regex(pattern: "a.c", options: "i"), "café", "cafe\u{301}",
    ]

    func testDifferentIDsNeverShareAText() {
        // By bytes: Swift's String equality would take a composed and a decomposed é for one.
        var seen: [[UInt8]: BSON] = [:]
        for id in Self.ids {
            let text = KeyText.text(id)
            if let other = seen[Array(text.utf8)] { XCTFail("\(ExtendedJSON.relaxed(id)) and \(ExtendedJSON.relaxed(other)) share \(text)") }
            seen[Array(text.utf8)] = id
        }
    }

    func testPlainStringsReadAsThemselvesAndLookalikesAreQuoted() {
        XCTAssertEqual(KeyText.text("order-17"), "order-17")
        XCTAssertEqual(KeyText.text("5"), "5")
        XCTAssertEqual(KeyText.text(""), "")
        XCTAssertEqual(KeyText.text("true"), #""true""#)
        XCTAssertEqual(KeyText.text(#"{"a":1}"#), #""{\"a\":1}""#)
        XCTAssertEqual(KeyText.text(.int32(5)), #"{"$numberLong":"5"}"#)
        XCTAssertEqual(KeyText.text(.objectId(Self.oid)), #"{"$oid":"6b146ecf4be695d5d7b12a2c"}"#)
        XCTAssertEqual(KeyText.text(.datetime(-1)), #"{"$date":{"$numberLong":"-1"}}"#)
        XCTAssertEqual(KeyText.text(.document(["a": .int32(1), "b": "x"])), #"{"a":{"$numberLong":"1"},"b":"x"}"#)
        XCTAssertEqual(KeyText.text("trailing "), #""trailing ""#, "Redshift ignores trailing spaces when it compares")
        XCTAssertEqual(KeyText.text(.binary(BSONBinary(subtype: 4, data: [0xAB, 0x01]))), #"{"$binary":"ab01"}"#)
        XCTAssertEqual(KeyText.text("k\u{0}x"), #""k\u0000x""#, "no text column holds U+0000: escaped, still one text per key")
        XCTAssertEqual(KeyText.parse(KeyText.text("k\u{0}x")), "k\u{0}x")
    }

    /// MongoDB keeps one `_id` per numeric value: its types share one text, so a key column converted from
    /// numbers (which cannot tell the types apart) matches whichever type a later change carries.
    func testEqualNumbersOfEveryTypeShareOneText() {
        let five = [BSON.int32(5), .int64(5), .double(5.0), .decimal128(Decimal128("5.00")!), .decimal128(Decimal128("0.5E+1")!)]
        XCTAssertEqual(Set(five.map(KeyText.text)), [#"{"$numberLong":"5"}"#])
        XCTAssertEqual(KeyText.text(.double(-0.0)), KeyText.text(.int32(0)))
        XCTAssertEqual(KeyText.text(.decimal128(Decimal128("-1.50")!)), #"{"$numberDecimal":"-1.5"}"#)
        XCTAssertEqual(KeyText.text(.double(1.5)), #"{"$numberDouble":"1.5"}"#)
        XCTAssertEqual(KeyText.text(.decimal128(Decimal128("-9223372036854775808")!)), #"{"$numberLong":"-9223372036854775808"}"#)
        XCTAssertEqual(KeyText.text(.decimal128(Decimal128("9223372036854775808")!)), #"{"$numberDecimal":"9223372036854775808"}"#)
    }

    /// A binary key column stores no subtype, and its rows convert to key text without one: binaries differing
    /// only in subtype share a text (and `candidates` looks up the usual subtypes).
    func testBinariesShareATextAcrossSubtypes() {
        let data: [UInt8] = Array(0..<16)
        XCTAssertEqual(KeyText.text(.binary(BSONBinary(subtype: 4, data: data))), KeyText.text(.binary(BSONBinary(subtype: 3, data: data))))
        XCTAssertEqual(KeyText.candidates(KeyText.text(.binary(BSONBinary(subtype: 4, data: data)))).count, 3)
    }

    func testTextsReadBack() {
        for id in Self.ids {
            let text = KeyText.text(id)
            let parsed = KeyText.parse(text)
            XCTAssertNotNil(parsed, text)
            if let parsed { XCTAssertEqual(KeyText.text(parsed), text, "\(ExtendedJSON.relaxed(id)) → \(text) → \(ExtendedJSON.relaxed(parsed))") }
        }
    }

    /// A text key column is as wide as the key text it holds (a quoted lookalike is longer than its string).
    func testKeyColumnsAreWideEnoughForTheirText() {
        let quoted = BSON.string("\"" + String(repeating: "\u{1}", count: 15))
        XCTAssertEqual(quoted.withView { ColumnType.ofKey($0) }, .varchar(256))
        XCTAssertEqual(BSON.null.withView { ColumnType.ofKey($0) }, .varchar(16))
        XCTAssertEqual(BSON.double(1.5).withView { ColumnType.ofKey($0) }, .varchar(64))
        XCTAssertEqual(ColumnType.bigint.widenedKey(with: .varchar(16)), .varchar(256))
        XCTAssertEqual(ColumnType.varchar(16).widenedKey(with: .varchar(64)), .varchar(64))
        XCTAssertEqual(ColumnType.binary(64_000).widenedKey(with: .char24), .varchar(65_535), "binary keys widen to text like any other")
        XCTAssertEqual(BSON.timestamp(BSONTimestamp(seconds: 1, increment: 1)).withView { ColumnType.ofKey($0) }, .varchar(64))
    }

    /// A date column holds TIMESTAMP's whole range, up to 294276 AD (the bound was divided by 1,000 by mistake:
    /// dates after 2262 were dead-lettered as out of range).
    func testTimestampsUpTo294276ADFit() throws {
        XCTAssertEqual(try ValueText.text(.datetime(253_402_300_799_999), as: .timestamp, column: "at"), "9999-12-31 23:59:59.999")
        XCTAssertEqual(try ValueText.text(.datetime(9_224_318_015_999_999), as: .timestamp, column: "at"), "294276-12-31 23:59:59.999")
        XCTAssertThrowsError(try ValueText.text(.datetime(9_224_318_016_000_000), as: .timestamp, column: "at"))
    }
}
