@testable import BSON
import MongoClient
import TestSupport
import XCTest

final class BSONRoundTripTests: XCTestCase {
    /// One value of every BSON type the type mapping covers, plus the rest of the spec.
    static var everyType: [(String, BSON)] { BSONSamples.everyType }

    func testEveryTypeRoundTripsThroughBytes() throws {
        let doc = Document(elements: Self.everyType)
        let decoded = try Document(bytes: doc.bytes)
        XCTAssertEqual(decoded.keys, Self.everyType.map(\.0))
        for ((name, expected), (key, value)) in zip(Self.everyType, decoded) {
            XCTAssertEqual(key, name)
            if case .double(let d) = expected, d.isNaN {
                guard case .double(let got) = value, got.isNaN else { return XCTFail("\(name): NaN lost: \(value)") }
                continue
            }
            XCTAssertEqual(value, expected, name)
        }
        XCTAssertEqual(decoded.bytes, doc.bytes)
    }

    func testInt64BeyondDoublePrecisionIsExact() throws {
        let doc: Document = ["n": .int64(9_007_199_254_740_993)]
        XCTAssertEqual(try Document(bytes: doc.bytes)["n"], .int64(9_007_199_254_740_993))
    }

    func testDecimal128TextIsExact() {
        for text in ["12345.678900", "-0.000001", "9007199254740993.011000", "1E+10", "-1.5E-20", "0", "-0", "NaN", "Infinity",
                     "1234567890123456789012345678901234", "1E-7", "-Infinity", "1.5E+300", "0.0000012", "-1.234567890123456789012345678901234E-6000"] {
            XCTAssertEqual(Decimal128(text)?.description, text, text)
        }
        XCTAssertNil(Decimal128("12345678901234567890123456789012345678"), "38 significant digits do not fit: refuse, never round")
        XCTAssertNil(Decimal128("not a number"))
    }

    /// The one-pass reader of plain decimals (numeric columns' text) must give the general parser's exact bits —
    /// trailing zeros, signs, zeros, 19 digits — and leave every other form to it.
    func testPlainDecimalsReadInOnePassMatchTheGeneralParser() {
        var corpus = ["0", "-0", "+0", "0.00", "-0.00", ".5", "5.", "-.5", "007.10", "1.50", "12345.678900",
                      "9999999999999999999", "-999999999999.9999999", "0.0000000000000000001", "18446744073709551615",
                      "1234567890123456789.", "+.0"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let whole = String(UInt64.random(in: 0...UInt64.max, using: &generator)).prefix(Int.random(in: 0...19, using: &generator))
            let fraction = String(UInt64.random(in: 0...UInt64.max, using: &generator)).prefix(Int.random(in: 0...19, using: &generator))
            let sign = ["", "-", "+"].randomElement(using: &generator)!
            corpus.append(sign + whole + (Bool.random(using: &generator) ? "." + fraction : ""))
        }
        var plainCount = 0
        for text in corpus {
            var copy = text
            copy.withUTF8 { bytes in
                let general = Decimal128.general(bytes)
                if let plain = Decimal128.plain(bytes) {
                    plainCount += 1
                    XCTAssertEqual(plain, general, text)
                } else {
                    let digits = text.filter(\.isNumber).count
                    XCTAssertTrue(digits == 0 || digits > 19, "a plain decimal left to the general parser: \(text)")
                }
                XCTAssertEqual(Decimal128(utf8: bytes), general, text)
            }
        }
        XCTAssertGreaterThan(plainCount, corpus.count / 2)
        // Forms only the general parser takes.
        for text in ["1E+3", "NaN", "-Infinity", "1.2.3", "12345678901234567890", "1,5", "", "-", "."] {
            var copy = text
            copy.withUTF8 { XCTAssertNil(Decimal128.plain($0), text) }
        }
    }

    func testNestedDottedPathLookup() {
        let doc: Document = ["a": .document(["b": .document(["c": 7])])]
        XCTAssertEqual(doc.value(at: "a.b.c"), 7)
        XCTAssertNil(doc.value(at: "a.x"))
    }

    func testEmptyKeysAreFoundAtAnyDepth() {
        XCTAssertFalse(Document(["a": 1, "b": .document(["c": .array([1, .document(["d": "x"])])])]).containsEmptyKey)
        XCTAssertTrue(Document(["": 1]).containsEmptyKey)
        XCTAssertTrue(Document(["a": 1, "b": .document(["c": 2, "": 3])]).containsEmptyKey)
        XCTAssertTrue(Document(["a": .array([1, .document(["": "x"])])]).containsEmptyKey)
        var everyType = Document()
        for (key, value) in BSONSamples.everyType { everyType.append(key, value) }
        XCTAssertFalse(everyType.containsEmptyKey, "every value type is stepped over")
        everyType.append("", .null)
        XCTAssertTrue(everyType.containsEmptyKey, "a key after every value type is reached")
    }

    func testMalformedBytesAreRejected() {
        let good: Document = ["k": "value"]
        var truncated = good.bytes
        truncated.removeLast(2)
        XCTAssertThrowsError(try Document(bytes: truncated))
        var badLength = good.bytes
        badLength[0] = 200
        XCTAssertThrowsError(try Document(bytes: badLength))
        var badUTF8 = good.bytes
        badUTF8[badUTF8.count - 3] = 0xFF
        XCTAssertThrowsError(try Document(bytes: badUTF8))
    }

    func testExtendedJSON() {
        let doc: Document = ["d": .decimal128(Decimal128("1.50")!), "t": .datetime(0), "o": .objectId(ObjectId(hex: "65a1b2c3d4e5f60718293a4b")!),
                             "s": "q\"\n", "b": .binary(BSONBinary(subtype: 0, data: [1, 2, 3]))]
        XCTAssertEqual(doc.description, #"{"d": {"$numberDecimal": "1.50"}, "t": {"$date": "1970-01-01T00:00:00.000Z"}, "o": {"$oid": "65a1b2c3d4e5f60718293a4b"}, "s": "q\"\n", "b": {"$binary": {"base64": "AQID", "subType": "00"}}}"#)
    }

    func testObjectIdGenerationIsUniqueAndOrderedByTime() {
        let a = ObjectId.generate(), b = ObjectId.generate()
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(ObjectId(hex: a.description), a)
        XCTAssertLessThan(ObjectId(timestamp: 1), ObjectId(timestamp: 2))
    }
}
