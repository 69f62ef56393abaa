import BSON
import Changes
import PostgresClient
import Replication
import Spool
import XCTest

/// A source row from literal text values (nil = NULL); owns one buffer per value, freed in `deinit`.
final class TextRow: SourceRow {
    let values: [UnsafeMutableBufferPointer<UInt8>?]
    convenience init(_ values: [String?]) { self.init(bytes: values.map { $0.map { Array($0.utf8) } }) }
    init(bytes: [[UInt8]?]) {
        values = bytes.map { value in
            value.map { v in
                let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, v.count))
                _ = buffer.initialize(from: v)
                return UnsafeMutableBufferPointer(rebasing: buffer[0..<v.count])
            }
        }
    }
    deinit { for v in values { v?.baseAddress.map { $0.deallocate() } } }
    var columnCount: Int { values.count }
    func isNull(_ column: Int) -> Bool { values[column] == nil }
    func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(values[column]!) }
    func string(_ column: Int) -> String? { values[column].map { String(decoding: $0, as: UTF8.self) } }
}

/// The in-place record writer (`RowEncoder.encodeRecord`, the extract hot path) must produce exactly the bytes of
/// the general encoder (`encode(row).change.record`), and hand every row it cannot write to it.
final class RecordEncodingTests: XCTestCase {
    let columns = [
        PostgresColumn(name: "id", typeOID: PostgresType.int8),
        PostgresColumn(name: "small", typeOID: PostgresType.int2),
        PostgresColumn(name: "amount", typeOID: PostgresType.numeric),
        PostgresColumn(name: "ratio", typeOID: PostgresType.float8),
        PostgresColumn(name: "name", typeOID: PostgresType.varchar),
        PostgresColumn(name: "paid", typeOID: PostgresType.bool),
        PostgresColumn(name: "day", typeOID: PostgresType.date),
        PostgresColumn(name: "updated_at", typeOID: PostgresType.timestamptz),
        PostgresColumn(name: "attrs", typeOID: PostgresType.jsonb),
        PostgresColumn(name: "blob", typeOID: PostgresType.bytea),
        PostgresColumn(name: "uid", typeOID: PostgresType.uuid),
    ]

    func table(key: [Int] = [0], watermark: Int? = 7, delete: Int? = nil, fieldNames: [String]? = nil) -> SourceTable {
        SourceTable(name: TableName(schema: nil, name: "t"), columns: columns, keyIndexes: key, watermarkIndex: watermark,
                    deleteIndex: delete, fieldNames: fieldNames)
    }

    let rows: [[String?]] = [
        ["1", "7", "12.50", "1.5", "plain", "t", "2024-02-29", "2024-01-01 00:00:00.123456+00", #"{"a": 1, "b": [true, null, "x"]}"#, "\\x00ff10", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        ["-9223372036854775808", "-32768", "-0.00", "-Infinity", "ünïcødé ✓", "f", "0001-01-01 BC", "1969-12-31 23:59:59.9995-02:30", #"[1, 2147483648, -2.5e3, {"k\u00e9y": "tab\tquote\" \ud83d\ude00"}]"#, "\\x", ""],
        ["42", nil, nil, nil, nil, nil, nil, nil, nil, nil, nil],
        ["43", "1", "NaN", "NaN", "", "t", "2024-06-01", "2024-06-01 12:00:00", #"  "just a string"  "#, "\\xDEADbeef", "x"],
        // Refused by both (a date BSON cannot hold): goes to the dead-letter file.
        ["46", "1", "1", "1", "", "t", "infinity", "2024-06-01 12:00:00", "{}", "\\x", "x"],
        ["44", "2", "123456789012345678901234567890.1234", "0", String(repeating: "long text ", count: 500), "t", "2024-06-01", "2024-06-01 12:00:00+05:45",
         #"{"deep": {"er": {"est": [[[]]]}}, "n": 12345678901234567890}"#, "\\x0a", "x"],
        ["45", "3", "1E+3", "1e308", "a\u{0}b", "f", "2024-06-01", "2024-06-01 12:00:00", "{}", "\\x", "x"],
    ]

    func general(_ encoder: RowEncoder, _ row: TextRow) -> [UInt8]? {
        guard case .change(let change, _, _) = encoder.encode(row) else { return nil }
        return change.record.bytes
    }

    func inPlace(_ encoder: RowEncoder, _ row: TextRow, scratchSize: Int = 64) -> RowEncoder.RecordOutcome {
        var scratch = [UInt8](repeating: 0, count: scratchSize)
        let outcome = encoder.encodeRecord(row, into: &scratch)
        if case .record(let n) = outcome { lastBytes = Array(scratch[0..<n]) }
        return outcome
    }
    var lastBytes: [UInt8] = []

    func assertSame(_ encoder: RowEncoder, _ values: [String?], file: StaticString = #filePath, line: UInt = #line) {
        let row = TextRow(values)
        let expected = general(encoder, row)
        // A tiny scratch exercises the grow-and-retry path too.
        for size in [16, 1 << 16] {
            switch inPlace(encoder, row, scratchSize: size) {
            case .record:
                XCTAssertEqual(lastBytes, expected, "row \(values.first.flatMap { $0 } ?? "-")", file: file, line: line)
                XCTAssertNoThrow(try Document(bytes: lastBytes), file: file, line: line)
            case .general:
                XCTAssertNil(expected, "the in-place writer gave up on a row the general encoder delivers", file: file, line: line)
            case .nullKey:
                guard case .nullKey = encoder.encode(row) else { return XCTFail("a NULL key the general encoder does not see", file: file, line: line) }
            }
        }
    }

    func testInPlaceRecordsEqualTheGeneralEncoderForEveryType() {
        let encoder = RowEncoder(table: table())
        for values in rows { assertSame(encoder, values) }
    }

    /// A date or timestamp watermark's value is written from the version parsed for `_mongoshift.v`: the same
    /// instant as the general encoder's, floored to milliseconds before 1970 too; an unparseable one falls back.
    func testWatermarkDatesWrittenFromTheVersionMatchTheGeneralEncoder() {
        let values: [[String?]] = [
            ["1", "1", "1", "1", "a", "t", "1969-12-31", "1969-12-31 23:59:59.999501+00", "{}", "\\x", "x"],
            ["2", "1", "1", "1", "a", "t", "1900-02-28", "1601-07-04 10:00:00.000001+00", "{}", "\\x", "x"],
            ["3", "1", "1", "1", "a", "t", "2024-06-01", "1970-01-01 00:00:00.0005+00", "{}", "\\x", "x"],
            ["4", "1", "1", "1", "a", "t", "infinity", "infinity", "{}", "\\x", "x"],
            ["5", "1", "1", "1", "a", "t", nil, nil, "{}", "\\x", "x"],
        ]
        for watermark in [6, 7, 1] {
            let encoder = RowEncoder(table: table(watermark: watermark))
            for row in values { assertSame(encoder, row) }
        }
        // By hand: 1969-12-31 23:59:59.999501 is -499 µs → date -1 ms, version -499.
        let encoder = RowEncoder(table: table())
        guard case .record = inPlace(encoder, TextRow(values[0])) else { return XCTFail("written in place") }
        let record = try? Document(bytes: lastBytes)
        guard case .document(let d)? = record?["d"] else { return XCTFail("no document") }
        XCTAssertEqual(d["updated_at"], .datetime(-1))
        XCTAssertEqual(record?["v"], .int64(-499))
    }

    /// One record against bytes written out by hand (the two encoders could agree on a mistake).
    func testARecordsBytesAreExactlyBSON() throws {
        let t = SourceTable(name: TableName(schema: nil, name: "t"),
                            columns: [PostgresColumn(name: "id", typeOID: PostgresType.int4), PostgresColumn(name: "u", typeOID: PostgresType.timestamp)],
                            keyIndexes: [0], watermarkIndex: 1, deleteIndex: nil)
        guard case .record(let n) = inPlace(RowEncoder(table: t), TextRow(["7", "1970-01-01 00:00:01.5"])) else { return XCTFail("not written") }
        let doc = try Document(bytes: Array(lastBytes[0..<n]))
        XCTAssertEqual(doc, ["o": .int32(1), "k": .int32(7),
                             "d": .document(["_id": .int32(7), "id": .int32(7), "u": .datetime(1500), "_mongoshift": .document(["v": .int64(1_500_000)])]),
                             "v": .int64(1_500_000)])
    }

    func testCompositeKeysRenamedFieldsAndNoWatermark() {
        var names = columns.map(\.name)
        names[4] = "displayName"
        let encoder = RowEncoder(table: table(key: [0, 4, 6], watermark: nil, fieldNames: names))
        for values in rows { assertSame(encoder, values) }
    }

    func testSoftDeletesAndFilteredRowsBecomeDeleteRecords() throws {
        var t = table(delete: 5)
        t.filter = "small > 1"
        let encoder = RowEncoder(table: t)
        for values in rows { assertSame(encoder, values + ["1"]) }
        // `paid = t` (the soft-delete column) and a row outside `where:` are deletes.
        assertSame(encoder, rows[0] + ["1"])
        assertSame(encoder, rows[5] + ["0"])
        guard case .record = inPlace(encoder, TextRow(rows[5] + ["0"])) else { return XCTFail("not written") }
        let change = try Change(record: try Document(bytes: lastBytes))
        XCTAssertEqual(change.operation, .delete)
        XCTAssertNil(change.document)
    }

    func testRowsItCannotWriteGoToTheGeneralEncoderAndNullKeysAreReported() {
        let encoder = RowEncoder(table: table())
        var bad = rows[0]
        bad[1] = "3000000000"  // does not fit int32
        XCTAssertEqual("\(inPlace(encoder, TextRow(bad)))", "general")
        bad = rows[0]
        bad[8] = "{\"a\": }"
        XCTAssertEqual("\(inPlace(encoder, TextRow(bad)))", "general")
        bad = rows[0]
        bad[2] = "1" + String(repeating: "1", count: 40)  // more than 34 significant digits
        XCTAssertEqual("\(inPlace(encoder, TextRow(bad)))", "general")
        var invalidUTF8: [[UInt8]?] = rows[0].map { $0.map { Array($0.utf8) } }
        invalidUTF8[4] = [0x61, 0xFF, 0x62]
        XCTAssertEqual("\(encoder.encodeRecord(TextRow(bytes: invalidUTF8), into: &lastBytes))", "general")
        var nullKey = rows[0]
        nullKey[0] = nil
        XCTAssertEqual("\(inPlace(encoder, TextRow(nullKey)))", "nullKey")
    }

    func testJSONParsedInPlaceMatchesItsValueForm() throws {
        for text in [#"{"a":1}"#, #"[]"#, #"[[1,[2,[3]]],{"":null}]"#, #""\u0000x""#, #"{"k\u0000ey": 1}"#, "-0", "12345678901", "1.25"] {
            let value = try JSONToBSON.parse(text)
            var scratch = [UInt8](repeating: 0, count: 8)
            let n = BSONWriter.encode(into: &scratch) { w in
                let d = w.beginDocument()
                let at = w.count
                w.element(0, "v")
                var copy = text
                guard let type = copy.withUTF8({ try? JSONToBSON.write($0, into: &w) }) else { return false }
                w.patch(at, type)
                w.endDocument(d)
                return true
            }
            XCTAssertEqual(Document(trustedBytes: Array(scratch[0..<n!]))["v"], value, text)
        }
        XCTAssertThrowsError(try JSONToBSON.parse(#"{"a" 1}"#))
        XCTAssertThrowsError(try JSONToBSON.parse(#"[1,]"#))
        XCTAssertThrowsError(try JSONToBSON.parse("\"\u{FF}"))
        XCTAssertEqual(try JSONToBSON.parse(#"{"a":[10,11]}"#), .document(["a": .array([.int32(10), .int32(11)])]))
        // Against values written out by hand, not by the parser itself.
        XCTAssertEqual(try JSONToBSON.parse(#" {"s": "tab\tq\" é \ud83d\ude00", "n": -2147483649, "d": 2.5e-3, "e": {}, "z": [null, false]} "#),
                       .document(["s": .string("tab\tq\" é 😀"), "n": .int64(-2_147_483_649), "d": .double(0.0025), "e": .document([:]),
                                  "z": .array([.null, .bool(false)])]))
        XCTAssertEqual(try JSONToBSON.parse(#"{"k\u0000ey": 1}"#), .document(["key": .int32(1)]), "a NUL in a key is dropped, as the key encoder does")
    }
}
