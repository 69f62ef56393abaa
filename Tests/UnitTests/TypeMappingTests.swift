import BSON
import MongoClient
import Replication
import XCTest

final class TypeMappingTests: XCTestCase {
    func decode(_ text: String, _ type: UInt32) throws -> BSON {
        var copy = text
        return try copy.withUTF8 { try TextValueDecoder.decode($0, type: type, column: "c") }
    }

    /// Floats as the pages read them — a REAL widened to DOUBLE PRECISION and printed with `extra_float_digits` 2
    /// (17 digits), or PostgreSQL's shortest exact text — give the same doubles; a REAL at its shortest decimal.
    func testFloatTextReadsBackExactly() {
        let real = PostgresType.float4, double = PostgresType.float8
        for value: Float in [0.1, 10.3255415, 1234567, 16777216, 3.4028235e+38, Float.leastNonzeroMagnitude, -2.5] {
            let widened = String(Double(value))  // what the server prints for CAST(real AS DOUBLE PRECISION)
            XCTAssertEqual(TextValueDecoder.parseFloat(widened, type: real), Double("\(value)"), widened)
            XCTAssertEqual(TextValueDecoder.parseFloat("\(value)", type: real), Double("\(value)"), "PostgreSQL's shortest text")
        }
        XCTAssertEqual(TextValueDecoder.parseFloat("0.10000000149011612", type: real), 0.1)
        XCTAssertEqual(TextValueDecoder.parseFloat("1.234567e+06", type: real), 1234567)
        XCTAssertEqual(TextValueDecoder.parseFloat("-Infinity", type: real), -.infinity)
        XCTAssertTrue(TextValueDecoder.parseFloat("NaN", type: real)?.isNaN ?? false)
        XCTAssertEqual(TextValueDecoder.parseFloat("0.30000000000000004", type: double), 0.1 + 0.2)
        XCTAssertEqual(TextValueDecoder.parseFloat("0.10000000000000001", type: double), 0.1)
        XCTAssertEqual(TextValueDecoder.parseFloat("Infinity", type: double), .infinity)
        XCTAssertNil(TextValueDecoder.parseFloat("1,5", type: double))
    }

    func testScalars() throws {
        XCTAssertEqual(try decode("-32768", PostgresType.int2), .int32(-32768))
        XCTAssertEqual(try decode("2147483647", PostgresType.int4), .int32(2_147_483_647))
        XCTAssertEqual(try decode("9007199254740993", PostgresType.int8), .int64(9_007_199_254_740_993))
        XCTAssertEqual(try decode("1.5", PostgresType.float8), .double(1.5))
        XCTAssertEqual(try decode("-Infinity", PostgresType.float4), .double(-.infinity))
        XCTAssertEqual(try decode("t", PostgresType.bool), .bool(true))
        XCTAssertEqual(try decode("f", PostgresType.bool), .bool(false))
        XCTAssertEqual(try decode("12345.678900", PostgresType.numeric), .decimal128(Decimal128("12345.678900")!))
        XCTAssertEqual(try decode("08:11:00+02", PostgresType.timetz), .string("08:11:00+02"))
        XCTAssertEqual(try decode("\\x00ff10", PostgresType.bytea), .binary(BSONBinary(subtype: 0, data: [0, 255, 16])))
        XCTAssertEqual(try decode("00ff10", PostgresType.redshiftVarbyte), .binary(BSONBinary(subtype: 0, data: [0, 255, 16])))
    }

    func testTimestampsKeepMillisecondsInUTC() throws {
        XCTAssertEqual(try decode("2024-06-01 00:00:11.987654+00", PostgresType.timestamptz), .datetime(1_717_200_011_987))
        XCTAssertEqual(try decode("2024-06-01 02:00:11.987654+02", PostgresType.timestamptz), .datetime(1_717_200_011_987))
        XCTAssertEqual(try decode("2024-01-01 00:11:00.123456", PostgresType.timestamp), .datetime(1_704_067_860_123))
        XCTAssertEqual(try decode("2024-01-12", PostgresType.date), .datetime(1_705_017_600_000))
        XCTAssertEqual(try decode("1969-12-31 23:59:59.9995", PostgresType.timestamp), .datetime(-1), "floor before the epoch")
        XCTAssertEqual(try decode("0044-03-15 BC", PostgresType.date), .datetime(Int64(ISODate.days(year: -43, month: 3, day: 15)) * 86_400_000))
        XCTAssertThrowsError(try decode("infinity", PostgresType.timestamptz))
    }

    func testDecimalBeyondDecimal128IsAnErrorNotARounding() {
        XCTAssertThrowsError(try decode("12345678901234567890123456789012345678", PostgresType.numeric)) { error in
            XCTAssertTrue("\(error)".contains("Decimal128"), "\(error)")
        }
    }

    func testJSONBecomesDocuments() throws {
        let value = try decode(#"{"sku": "A", "n": 9007199254740993, "x": 2.5, "tags": ["a", 1, null, true], "deep": {"k": {}}, "u": "\u00e9\ud83d\ude00"}"#,
                               PostgresType.jsonb)
        let expected: Document = ["sku": "A", "n": .int64(9_007_199_254_740_993), "x": 2.5, "tags": .array(["a", 1, .null, true]),
                                  "deep": .document(["k": .document([:])]), "u": "é😀"]
        XCTAssertEqual(value, .document(expected))
        XCTAssertEqual(try decode("[1,2]", PostgresType.redshiftSuper), .array([1, 2]))
        XCTAssertThrowsError(try decode("{\"a\": }", PostgresType.json))
    }

    func testInvalidUTF8IsAnError() throws {
        let bytes: [UInt8] = [0x61, 0xFF, 0x62]
        XCTAssertThrowsError(try bytes.withUnsafeBufferPointer { try TextValueDecoder.decode($0, type: PostgresType.text, column: "note") }) { error in
            XCTAssertTrue("\(error)".contains("note"))
        }
    }
}
