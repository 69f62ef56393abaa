import BSON
import MongoClient
@testable import Replication
import XCTest

final class SchemaTrackerTests: XCTestCase {
    func testTypeLatticeWidens() {
        XCTAssertEqual(ColumnType.integer.widened(with: .bigint), .bigint)
        XCTAssertEqual(ColumnType.bigint.widened(with: .double), .double)
        XCTAssertEqual(ColumnType.integer.widened(with: .decimal(scale: 2)), .decimal(scale: 2))
        XCTAssertEqual(ColumnType.decimal(scale: 2).widened(with: .decimal(scale: 5)), .decimal(scale: 5))
        // Every decimal column holds 20 integer digits: widening raises the scale without an overflow; a value
        // beyond (24 integer digits, or scale 19) is text from the start.
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("123456789012345678901234")!)), .varchar(64))
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("1234567890123456789012.345678901234")!)), .varchar(64))
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("99999999999999999999.99999999999999")!)), .decimal(scale: 14))
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("1.0000000000000000001")!)), .varchar(64))
        XCTAssertEqual(ColumnType.bigint.widened(with: .decimal(scale: 18)), .decimal(scale: 18))
        XCTAssertEqual(ColumnType.decimal(scale: 2).widened(with: .decimal(scale: 25)), .varchar(64), "an older version's scale 25")
        XCTAssertEqual(ColumnType.double.widened(with: .decimal(scale: 2)), .varchar(64), "double + decimal → text, never a lossy number")
        XCTAssertEqual(ColumnType.varchar(16).widened(with: .varchar(1024)), .varchar(1024))
        XCTAssertEqual(ColumnType.boolean.widened(with: .integer), .varchar(64))
        XCTAssertEqual(ColumnType.timestamp.widened(with: .varchar(16)), .varchar(64))
        XCTAssertEqual(ColumnType.integer.widened(with: .nested), .nested)
        XCTAssertEqual(ColumnType.char24.widened(with: .varchar(16)), .varchar(64))
    }

    func testValueTypes() {
        XCTAssertEqual(ColumnType.of(.int32(1)), .integer)
        XCTAssertEqual(ColumnType.of(.int64(1)), .bigint)
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("12.500")!)), .decimal(scale: 3))
        XCTAssertEqual(ColumnType.of(.decimal128(Decimal128("1E+40")!)), .varchar(16), "does not fit decimal(38,s): text")
        XCTAssertEqual(ColumnType.of(.objectId(ObjectId.generate())), .char24)
        XCTAssertEqual(ColumnType.of(.string(String(repeating: "x", count: 100))), .varchar(256))
        XCTAssertEqual(ColumnType.of(.string(String(repeating: "x", count: 70_000))), .varchar(65_535))
        XCTAssertEqual(ColumnType.of(.array([1])), .nested)
        XCTAssertEqual(ColumnType.of(.timestamp(BSONTimestamp(seconds: 1, increment: 2))), .bigint)
        XCTAssertNil(ColumnType.of(.null))
        for type in [ColumnType.boolean, .integer, .bigint, .decimal(scale: 4), .double, .timestamp, .char24, .varchar(77), .nested, .binary(64_000), .binary(1_024_000)] {
            XCTAssertEqual(ColumnType(persisted: type.description), type)
        }
    }

    /// MinKey and MaxKey field values are text (as `_id`s are): they used to ask for no type and were written as
    /// an empty string, which an integer, date or boolean column refuses — the whole batch failed, for good.
    func testMinKeyAndMaxKeyFieldsAreText() throws {
        XCTAssertEqual(ColumnType.of(.minKey), .varchar(16))
        XCTAssertEqual(ColumnType.of(.maxKey), .varchar(16))
        XCTAssertEqual(ColumnType.integer.widened(with: ColumnType.of(.minKey)!), .varchar(64))
        for (value, text) in [(BSON.minKey, #"{"$minKey":1}"#), (.maxKey, #"{"$maxKey":1}"#)] {
            var out = PlainText()
            try ValueText.write(value, as: .varchar(64), column: "n", to: &out)
            XCTAssertEqual(String(decoding: out.bytes, as: UTF8.self), text)
        }
    }

    /// PostgreSQL keeps 63 bytes of an identifier: longer names were cut by the server, so the catalog never
    /// showed the name the tracker asked for (a replayed ADD COLUMN failed with 42701, for good) and two long paths
    /// met in one column. On PostgreSQL names are cut to 63 bytes here, and such paths collide visibly.
    func testColumnNamesFitThePostgreSQLLimit() throws {
        let long = "shippingAddress.internationalDeliveryInstructionsOverrideForTheCarrier"
        var postgres = SchemaTracker(flatten: 2, maxNameBytes: ColumnNaming.maxBytes(.postgres))
        _ = try postgres.observe([["_id": 1, "shippingAddress": .document(["internationalDeliveryInstructionsOverrideForTheCarrier": "x"])]])
        let name = try XCTUnwrap(postgres.schema.columns.first { $0.path == long }?.name)
        XCTAssertEqual(name.utf8.count, 63)
        var redshift = SchemaTracker(flatten: 2)
        _ = try redshift.observe([["_id": 1, "shippingAddress": .document(["internationalDeliveryInstructionsOverrideForTheCarrier": "x"])]])
        XCTAssertEqual(redshift.schema.columns.first { $0.path == long }?.name.utf8.count, long.utf8.count)
        var clash = SchemaTracker(flatten: 2, maxNameBytes: 63)
        XCTAssertThrowsError(try clash.observe([["_id": 1, "shippingAddress": .document(["internationalDeliveryInstructionsOverrideForTheCarrierA": "x",
                                                                                         "internationalDeliveryInstructionsOverrideForTheCarrierB": "y"])]]))
    }

    /// Redshift casts no BOOLEAN to a character type (42846): a boolean column widened to VARCHAR converts its rows
    /// with CASE (the stand-in accepts the CAST, so only the SQL shows it).
    func testABooleanBecomesTextWithoutACast() {
        for dialect in [SQLDialect.redshift, .postgres] {
            let sql = TargetSQL(dialect: dialect, table: TableName(schema: "public", name: "apps"))
            let converted = sql.converted("flag", from: .boolean, to: .varchar(16))
            XCTAssertEqual(converted, #"CASE WHEN "flag" THEN 'true' WHEN NOT "flag" THEN 'false' END"#, "\(dialect)")
            XCTAssertFalse(sql.alterColumnType(.init(name: "flag", path: "flag", type: .varchar(16)), from: .boolean).contains("::text"))
        }
    }

    func testNameSanitising() {
        XCTAssertEqual(ColumnNaming.sanitize("Customer Name"), "customer_name")
        XCTAssertEqual(ColumnNaming.sanitize("1st"), "_1st")
        XCTAssertEqual(ColumnNaming.sanitize("prix€"), "prix_")
        XCTAssertEqual(ColumnNaming.sanitize(""), "_")
        XCTAssertEqual(ColumnNaming.sanitize(String(repeating: "a", count: 300)).utf8.count, 127)
    }

    func testCollisionNamesBothFields() {
        var tracker = SchemaTracker(flatten: 1)
        XCTAssertThrowsError(try tracker.observe([["_id": 1, "Price": 1, "price": 2]])) { error in
            XCTAssertEqual("\(error)", #"fields "Price" and "price" both map to column "price"; rename one in the source"#)
        }
    }

    func testObserveAddsAndWidensColumnsIdFirst() throws {
        var tracker = SchemaTracker(flatten: 1)
        let first = try tracker.observe([["name": "a", "_id": .objectId(ObjectId.generate()), "n": 1, "sub": .document(["x": 1])]])
        XCTAssertEqual(tracker.schema.columns.map(\.name), ["_id", "name", "n", "sub"])
        XCTAssertEqual(first.count, 4)
        let second = try tracker.observe([["_id": .objectId(ObjectId.generate()), "n": .int64(5), "added": true]])
        XCTAssertEqual(second, [.widenColumn(TableSchema.Column(name: "n", path: "n", type: .bigint), from: .integer),
                                .addColumn(TableSchema.Column(name: "added", path: "added", type: .boolean))])
        // A known field's column (values are placed by it), `_id` first whatever the document's order; nil once the
        // schema changes.
        XCTAssertEqual(try tracker.learn("added", .bool(false)), 4)
        XCTAssertEqual(try tracker.learn("_id", .objectId(ObjectId.generate())), 0)
        XCTAssertEqual(try tracker.learn("name", .string("x")), 1)
        XCTAssertEqual(try tracker.learn("n", .null), 2, "a null widens nothing")
        XCTAssertNil(try tracker.learn("late", .int32(1)))
        XCTAssertEqual(tracker.schema.columns.map(\.name), ["_id", "name", "n", "sub", "added", "late"])
        XCTAssertEqual(try tracker.learn("late", .int32(2)), 5)
        XCTAssertNil(try tracker.learn("late", .string("now text")), "a widening changes the schema")
    }

    /// A field seen as null first gets its column with its first value's type: it used to be made text at once,
    /// and types only widen — a date or an integer that came later was stored as a string for good.
    func testAFieldNullAtFirstTakesTheTypeOfItsFirstValue() throws {
        var tracker = SchemaTracker(flatten: 1)
        _ = try tracker.observe([["_id": 1, "deletedAt": .null, "n": .null]])
        XCTAssertEqual(tracker.schema.columns.map(\.name), ["_id"], "no column for a field only ever null")
        XCTAssertEqual(try tracker.learn("deletedAt", .null), SchemaTracker.noColumn)
        let changes = try tracker.observe([["_id": 2, "deletedAt": .datetime(1_700_000_000_000), "n": 5]])
        XCTAssertEqual(changes, [.addColumn(TableSchema.Column(name: "deletedat", path: "deletedAt", type: .timestamp)),
                                 .addColumn(TableSchema.Column(name: "n", path: "n", type: .integer))])
    }

    /// The decimal column scale, computed from a value's parts, is what its text says (the rule it replaced).
    func testDecimalScaleFollowsTheTextForm() {
        func byText(_ d: Decimal128) -> Int? {
            let text = d.description
            guard !d.isNaN && !d.isInfinite, !text.contains("E") else { return nil }
            let digits = text.filter(\.isNumber)
            let scale = text.split(separator: ".").dropFirst().first?.count ?? 0
            let integer = text.split(separator: ".").first.map { $0.filter(\.isNumber) } ?? ""
            let integerDigits = integer.drop { $0 == "0" }.count
            guard digits.count <= 38, scale <= 18, integerDigits <= 20 else { return nil }
            return scale
        }
        var samples = ["0", "-0", "1", "12.50", "-0.00", "0.000001", "0.0000001", "123456789012345678901234567890.1234", "1E+3", "1E-6",
                       "0.1234567890123456789012345678901234", "9999999999999999999999999999999999", "NaN", "-Infinity", "1.000000000000000000000000000000000E-30",
                       "0.00000000000000000000000000000012345"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let digits = Int.random(in: 1...34, using: &rng)
            let coefficient = String((0..<digits).map { _ in "0123456789".randomElement(using: &rng)! })
            samples.append(coefficient + "E" + String(Int.random(in: -45...5, using: &rng)))
        }
        for text in samples {
            guard let d = Decimal128(text) else { continue }
            XCTAssertEqual(ColumnType.decimalScale(d), byText(d), text)
        }
    }

    func testFlattenDepth() {
        let doc: Document = ["_id": 1, "a": .document(["b": .document(["c": 1]), "d": 2]), "arr": .array([1, 2])]
        func paths(_ flatten: Int) -> [String] {
            var out: [String] = []
            SchemaTracker.forEachField(of: doc, flatten: flatten) { path, _ in out.append(path) }
            return out
        }
        XCTAssertEqual(paths(1), ["_id", "a", "arr"])
        XCTAssertEqual(paths(2), ["_id", "a.b", "a.d", "arr"])
        XCTAssertEqual(paths(0), ["_id", "doc"])
    }

    func testValueTextAndLimits() throws {
        XCTAssertEqual(try ValueText.text(.datetime(1_704_067_201_123), as: .timestamp, column: "t"), "2024-01-01 00:00:01.123")
        XCTAssertEqual(try ValueText.text(.int32(5), as: .varchar(64), column: "v"), "5")
        XCTAssertEqual(try ValueText.text(.document(["a": .decimal128(Decimal128("1.50")!), "d": .datetime(0)]), as: .nested, column: "j"),
                       #"{"a":1.50,"d":"1970-01-01T00:00:00.000Z"}"#)
        XCTAssertThrowsError(try ValueText.text(.string(String(repeating: "x", count: 70_000)), as: .varchar(65_535), column: "big")) { error in
            XCTAssertTrue("\(error)".contains("big") && "\(error)".contains("70000"), "\(error)")
        }
    }

    func testNestedValuesAreWrittenAsPlainJSONFromTheirBytes() throws {
        let oid = ObjectId(hex: "000102030405060708090a0b")!
        let value: BSON = .document([
            "s": "a\"b\\c\n\u{1}é", "i": .int32(-5), "l": .int64(1 << 40), "d": .double(0.5), "inf": .double(.infinity),
            "m": .decimal128(Decimal128("-1.50")!), "nan": .decimal128(Decimal128("NaN")!), "b": true, "n": .null,
            "t": .datetime(1_704_067_201_123), "o": .objectId(oid), "bin": .binary(BSONBinary(subtype: 0, data: [1, 2, 3])),
            "arr": .array([1, "x", .document(["k\t": .null])]), "e": .document([:]),
        ])
        XCTAssertEqual(try ValueText.text(value, as: .nested, column: "j"),
                       #"{"s":"a\"b\\c\n\u0001é","i":-5,"l":1099511627776,"d":0.5,"inf":null,"m":-1.50,"nan":null,"b":true,"n":null,"#
                       + #""t":"2024-01-01T00:00:01.123Z","o":"000102030405060708090a0b","bin":"AQID","arr":[1,"x",{"k\t":null}],"e":{}}"#)
        XCTAssertEqual(try ValueText.text(.decimal128(Decimal128("-0.000012")!), as: .decimal(scale: 6), column: "m"), "-0.000012")
        XCTAssertEqual(try ValueText.text(.double(1.0 / 3), as: .double, column: "d"), "\(1.0 / 3)")
        let longest = BSON.document(["k": .string(String(repeating: "x", count: 100)), String(repeating: "y", count: 150): .array(["z"])])
        XCTAssertEqual(longest.withView { ValueText.longestString(in: $0) }, 150, "keys count as strings too")
        XCTAssertNil(BSON.array([1, 2]).withView { ValueText.longestString(in: $0) })
    }

    func testCopyTextEscaping() {
        var out = CopyText()
        out.appendRow(["a\tb\\c\nd", nil, "é"])
        XCTAssertEqual(String(decoding: out.bytes, as: UTF8.self), "a\\tb\\\\c\\nd\t\\N\té\n")
        XCTAssertEqual(out.rows, 1)
    }

    /// The load path writes values straight into COPY text: each value's text, escaped, against literals.
    func testValuesWrittenAsCopyTextAreTheirTextEscaped() throws {
        let cases: [(BSON, ColumnType, String)] = [
            (.int32(-42), .integer, "-42"), (.int64(.min), .bigint, "-9223372036854775808"), (.int64(9_007_199_254_740_993), .varchar(64), "9007199254740993"),
            (.double(0.1), .double, "0.1"), (.decimal128(Decimal128("-12.50")!), .decimal(scale: 2), "-12.50"), (.bool(true), .boolean, "true"),
            (.bool(false), .varchar(16), "false"), (.datetime(-62_135_596_800_001), .timestamp, "0001-12-31 23:59:59.999 BC"),
            (.datetime(1_704_067_201_123), .timestamp, "2024-01-01 00:00:01.123"), (.datetime(0), .varchar(64), "1970-01-01 00:00:00.000"),
            (.string("tab\there\\ and\r\nnewline é"), .varchar(64), #"tab\there\\ and\r\nnewline é"#),
            (.objectId(ObjectId(bytes: Array(0..<12))), .char24, "000102030405060708090a0b"),
            (.binary(BSONBinary(subtype: 0, data: [0, 0x0a, 0xff])), .binary(64_000), "000aff"),
            (.document(["a": .array([.int32(1), .string("x\ty")])]), .nested, #"{"a":[1,"x\\ty"]}"#),
            (.timestamp(BSONTimestamp(seconds: 5, increment: 7)), .bigint, "21474836487"), (.string("1234567890"), .binary(16), "1234567890"),
        ]
        for (value, type, expected) in cases {
            var copy = CopyText()
            copy.nextColumn()
            try ValueText.write(value, as: type, column: "c", to: &copy)
            copy.endRow()
            XCTAssertEqual(String(decoding: copy.bytes, as: UTF8.self), expected + "\n", "\(value) as \(type)")
        }
        // A row dropped half-written leaves the rows before it whole.
        var rows = CopyText()
        rows.appendRow(["1", nil])
        rows.nextColumn()
        try ValueText.write(.string("kept"), as: .varchar(8), column: "c", to: &rows)
        rows.nextColumn()
        XCTAssertThrowsError(try ValueText.write(.string("too long"), as: .varchar(4), column: "c", to: &rows))
        rows.abandonRow()
        XCTAssertEqual(String(decoding: rows.bytes, as: UTF8.self), "1\t\\N\n")
        XCTAssertEqual(rows.rows, 1)
        var copy = CopyText()
        copy.nextColumn()
        XCTAssertThrowsError(try ValueText.write(.string("too long"), as: .varchar(4), column: "c", to: &copy))
        XCTAssertThrowsError(try ValueText.write(.datetime(.max), as: .timestamp, column: "c", to: &copy))
        copy.abandonRow()
        XCTAssertTrue(copy.bytes.isEmpty)
        var bytea = CopyText()
        try ValueText.write(.binary(BSONBinary(subtype: 0, data: [0xab])), as: .binary(64_000), column: "c", byteaPrefix: true, to: &bytea)
        XCTAssertEqual(String(decoding: bytea.bytes, as: UTF8.self), #"\\xab"#)
        XCTAssertEqual(ValueText.timestampText(-62_135_596_800_001), "0001-12-31 23:59:59.999 BC")
    }
}

final class TargetSQLTests: XCTestCase {
    let schema = TableSchema(columns: [
        .init(name: "_id", path: "_id", type: .char24), .init(name: "doc", path: "doc", type: .nested),
        .init(name: "bin", path: "bin", type: .binary(64_000)), .init(name: "Select", path: "Select", type: .varchar(16)),
    ])

    func statements(_ dialect: SQLDialect) -> [String] {
        let sql = TargetSQL(dialect: dialect, table: TableName(schema: "analytics", name: "Apps \"x\""))
        var out = [sql.createTable(schema), sql.createCheckpoints(), sql.seedCheckpoint(), sql.advanceCheckpoint(), sql.deleteChanged(),
                   sql.insertUpserts(schema), sql.insertStage(schema, rows: 2), sql.readCheckpoint(), sql.addGenerationColumn(),
                   sql.highestGeneration(), sql.sweep(), sql.readGenerationFence(), sql.raiseGenerationFence(), sql.generationFence()]
        out += [sql.lockCheckpoints()].compactMap { $0 }
        out += sql.createStage(schema)
        out.append(sql.addColumn(.init(name: "n", path: "n", type: .integer)))
        out.append(sql.alterColumnType(.init(name: "s", path: "s", type: .varchar(1024)), from: .varchar(16)))
        if dialect == .postgres { out.append(sql.alterColumnType(.init(name: "n", path: "n", type: .bigint), from: .integer)) }
        out.append(sql.catalogColumns())
        let swap = sql.columnSwap(.init(name: "n", path: "n", type: .bigint), from: .integer)
        out += [swap.addTemporary, swap.copy, swap.dropOld, swap.renameTemporary]
        let widerKey = TableSchema(columns: [.init(name: "_id", path: "_id", type: .varchar(64))] + schema.columns.dropFirst())
        let rebuild = sql.tableRebuild(widerKey, from: schema)
        out += [rebuild.dropRebuild, rebuild.create, rebuild.fill, rebuild.dropOld] + rebuild.swap
        return out
    }

    func testRedshiftDialectUsesOnlyRedshiftConstructs() {
        let all = statements(.redshift).joined(separator: "\n")
        for forbidden in ["ON CONFLICT", "COPY", "FOR UPDATE", "FOR SHARE", "jsonb", "bytea", "now()", "USING \"n\"", "::"] {
            XCTAssertFalse(all.contains(forbidden), "redshift SQL contains \(forbidden):\n\(all)")
        }
        XCTAssertTrue(all.contains("super") && all.contains("varbyte") && all.contains("JSON_PARSE($2)") && all.contains("FROM_HEX($3)"))
        XCTAssertTrue(all.contains("LOCK \"analytics\".\"mongoshift_checkpoints\""))
        XCTAssertTrue(all.contains("ALTER TABLE \"analytics\".\"Apps \"\"x\"\"\" ALTER COLUMN \"s\" TYPE varchar(1024)"), "VARCHAR grows in place")
        XCTAssertTrue(all.contains("RENAME COLUMN \"n__mongoshift_new\" TO \"n\""), "other widenings swap columns")
        XCTAssertTrue(all.contains(#"ALTER TABLE "analytics"."Apps ""x""" RENAME TO "Apps ""x""__mongoshift_old""#), "a key column widens by a table rebuild")
        XCTAssertTrue(all.contains(#"SELECT '{"$oid":"' || "_id" || '"}', "doc", "bin", "Select", "_mongoshift_gen" FROM"#), "the key becomes key text:\n\(all)")
        XCTAssertTrue(all.contains("GETDATE()"))
    }

    func testPostgresDialect() {
        let all = statements(.postgres).joined(separator: "\n")
        XCTAssertTrue(all.contains("jsonb") && all.contains("bytea") && all.contains("FOR UPDATE"))
        // Pages hold the generation fence shared: a new generation's raise waits for the older pages in flight.
        XCTAssertTrue(TargetSQL(dialect: .postgres, table: TableName(schema: "a", name: "t")).readGenerationFence().hasSuffix(" FOR SHARE"))
        XCTAssertTrue(all.contains("ON CONFLICT (stream) DO NOTHING"), "workers may seed a checkpoint row at once")
        XCTAssertTrue(all.contains("ALTER COLUMN \"n\" TYPE bigint USING \"n\"::bigint"))
        XCTAssertEqual(TargetSQL(dialect: .postgres, table: TableName(schema: "a", name: "t")).copyStage(schema),
                       #"COPY "mongoshift_stage_t" ("_id", "doc", "bin", "Select", "__op") FROM STDIN"#)
    }
}

final class RedshiftInsertBatchingTests: XCTestCase {
    func testBatchesRespectStatementSizeAndParameterLimits() {
        let big = String(repeating: "x", count: 60_000)
        let rows = StagedRows(width: 2, rows: (0..<1000).map { _ in [big, "u"] })
        let batches = RedshiftApplier.insertBatches(rows)
        XCTAssertEqual(batches.map(\.count).reduce(0, +), 1000, "every row once")
        XCTAssertEqual(batches.first?.lowerBound, 0)
        XCTAssertEqual(zip(batches, batches.dropFirst()).filter { $0.upperBound != $1.lowerBound }.count, 0, "contiguous")
        for b in batches {
            let bytes = b.map { rows.byteCount(ofRow: $0) }.reduce(0, +)
            XCTAssertLessThanOrEqual(bytes, 16 << 20)
        }
        let narrow = StagedRows(width: 100, rows: (0..<5000).map { _ in Array(repeating: "1", count: 100) })
        XCTAssertTrue(RedshiftApplier.insertBatches(narrow).allSatisfy { $0.count * 100 <= 32_000 })
    }

    func testStagedRowsKeepValuesNullsAndAbandonedRowsApart() {
        var rows = StagedRows(width: 3)
        rows.append(value: "a\tb")
        rows.appendNull()
        rows.append(value: "u")
        rows.endRow()
        rows.append(value: "half")
        rows.beginValue()
        rows.abandonRow()
        rows.append(value: "")
        rows.append(value: "é")
        rows.append(value: "d")
        rows.endRow()
        XCTAssertEqual(rows.count, 2)
        func text(_ index: Int) -> String? { rows.values.withValue(at: index) { $0.map { String(decoding: $0, as: UTF8.self) } } }
        XCTAssertEqual((0..<6).map(text), ["a\tb", nil, "u", "", "é", "d"])
        XCTAssertEqual(rows.byteCount(ofRow: 1), 3)
        var copy = StagedRows(width: 3)
        copy.appendRow(1, of: rows)
        XCTAssertEqual(copy.values.withValue(at: 1) { $0.map { Array($0) } }, Array("é".utf8))
    }
}

final class CopyLinesTests: XCTestCase {
    func testJSONLinesEscapeValuesAndKeepNestedAndNulls() {
        let rows = StagedRows(width: 4, rows: [["k\"1", #"{"a":[1,"x"]}"#, nil, "u"], ["line\nbreak\u{01}", "null", "\\", "d"]])
        var out = PlainText()
        let keys = CopyLoader.jsonKeys(["_id", "doc", "t\"x", "__op"])
        for row in 0..<rows.count { CopyLoader.writeJSONLine(row, of: rows, keys: keys, nested: [false, true, false, false], to: &out) }
        XCTAssertEqual(String(decoding: out.bytes, as: UTF8.self),
                       #"{"_id":"k\"1","doc":{"a":[1,"x"]},"t\"x":null,"__op":"u"}"# + "\n"
                       + #"{"_id":"line\nbreak\u0001","doc":null,"t\"x":"\\","__op":"d"}"# + "\n")
    }
}

extension StagedRows {
    /// Rows of texts (nil = NULL), for tests.
    init(width: Int, rows: [[String?]]) {
        self.init(width: width)
        for row in rows {
            for value in row {
                if let value { append(value: value) } else { appendNull() }
            }
            endRow()
        }
    }
}

extension ColumnType {
    /// The type of a decoded value, for tests.
    static func of(_ value: BSON) -> ColumnType? { value.withView { of($0) } }
}

extension SchemaTracker {
    /// `learn` for a decoded value, for tests.
    mutating func learn(_ path: String, _ value: BSON) throws(CollisionError) -> Int? {
        try value.withView { (view) throws(CollisionError) in try learn(path, view) }
    }
}

extension CopyText {
    /// A whole row of texts (nil = NULL), for tests.
    mutating func appendRow(_ row: [String?]) {
        for value in row {
            nextColumn()
            if let value { var text = value; text.withUTF8 { append($0) } } else { appendNull() }
        }
        endRow()
    }
}
