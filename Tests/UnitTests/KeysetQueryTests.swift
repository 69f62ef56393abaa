import Changes
import MongoClient
import PostgresClient
@testable import Replication
import Spool
import XCTest

final class KeysetQueryTests: XCTestCase {
    func table(keys: [String], watermark: String? = "updated_at", wmType: UInt32 = PostgresType.timestamptz) -> SourceTable {
        var columns = keys.map { PostgresColumn(name: $0, typeOID: PostgresType.int8, typeModifier: -1) }
        columns.append(PostgresColumn(name: "Select", typeOID: PostgresType.text, typeModifier: -1))
        var wmIndex: Int?
        if let watermark {
            wmIndex = columns.count
            columns.append(PostgresColumn(name: watermark, typeOID: wmType, typeModifier: -1))
        }
        return SourceTable(name: TableName(schema: "Sales Data", name: "or\"ders"), columns: columns,
                           keyIndexes: Array(0..<keys.count), watermarkIndex: wmIndex, deleteIndex: nil)
    }

    func testSnapshotPageQuotesIdentifiersAndBindsValues() {
        let (sql, params) = KeysetQuery.snapshotPage(table: table(keys: ["id"]), after: ["42"], lower: "0", upper: "1000", limit: 500)
        XCTAssertEqual(sql, #"SELECT "id", "Select", "updated_at" FROM "Sales Data"."or""ders" WHERE "id" > $1 AND "id" <= $2 AND "id" IS NOT NULL ORDER BY "id" LIMIT 500"#)
        XCTAssertEqual(params, ["42", "1000"])
    }

    func testCompositeKeysetWithoutRowValues() {
        let (sql, params) = KeysetQuery.snapshotPage(table: table(keys: ["a", "b"]), after: ["1", "2"], lower: nil, upper: nil, limit: 10)
        XCTAssertTrue(sql.contains(#"("a" > $1 OR ("a" = $2 AND "b" > $3))"#) || sql.contains(#"("a" > $1 OR ("a" = $1 AND "b" > $2))"#), sql)
        XCTAssertFalse(sql.contains("(\"a\", \"b\") >"), "Redshift has no row-value comparison")
        XCTAssertTrue(params.count >= 2)
    }

    func testTailPollUsesCompositeWatermarkAndSourceClock() {
        let t = table(keys: ["id"])
        let (pg, pgParams) = KeysetQuery.tailPoll(table: t, dialect: .postgres, afterWatermark: "2024-01-01 00:00:00", afterKey: ["7"], safetyLagSeconds: 60, limit: 100)
        XCTAssertEqual(pg, #"SELECT "id", "Select", "updated_at" FROM "Sales Data"."or""ders" WHERE ("updated_at" > $1 OR ("updated_at" = $1 AND "id" > $2)) AND "updated_at" <= (now() AT TIME ZONE 'UTC' - INTERVAL '60 seconds') ORDER BY "updated_at", "id" LIMIT 100"#)
        XCTAssertEqual(pgParams, ["2024-01-01 00:00:00", "7"])
        let (rs, _) = KeysetQuery.tailPoll(table: t, dialect: .redshift, afterWatermark: nil, afterKey: nil, safetyLagSeconds: 5, limit: 100)
        XCTAssertTrue(rs.contains("DATEADD(second, -5, GETDATE())"), rs)
        XCTAssertFalse(rs.contains("now()"), "Redshift dialect uses GETDATE()")
    }

    func testGuardFilterShape() {
        let filter = MongoApplier.guardFilter(key: 5, version: .int64(10))
        XCTAssertEqual(filter.description, #"{"_id": 5, "$or": [{"_mongoshift.v": {"$lte": 10}}, {"_mongoshift.v": {"$not": {"$type": "number"}}}]}"#)
    }

    func testLastChangePerKeyWins() {
        let changes = [Change(operation: .upsert, key: 1, document: ["v": 1]), Change(operation: .upsert, key: 2, document: ["v": 2]),
                       Change(operation: .delete, key: 1), Change(operation: .upsert, key: 2, document: ["v": 3])]
        let latest = changes.latestPerKey()
        XCTAssertEqual(latest.map(\.key), [1, 2])
        XCTAssertEqual(latest[0].operation, .delete)
        XCTAssertEqual(latest[1].document, ["v": 3])
    }

    func testPageSizeFollowsRowWidth() {
        var sizer = BatchSizer(targetBytes: 8 << 20)
        sizer.observe(rows: 1000, bytes: 1000 * 800)
        XCTAssertEqual(sizer.rows, (8 << 20) / 800)
        sizer.observe(rows: 10, bytes: 10 * 4 << 20)
        XCTAssertEqual(sizer.rows, 100, "never below 100 rows")
    }

    func testRetryBackoffIsCappedAndJittered() {
        let policy = RetryPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(2))
        for attempt in 1...20 {
            let d = policy.delay(attempt: attempt).seconds
            XCTAssertLessThanOrEqual(d, 2.0001)
            XCTAssertGreaterThan(d, 0)
        }
    }
}

final class TableNameParsingTests: XCTestCase {
    func testPlainQuotedAndEscapedNames() {
        XCTAssertEqual(TableName(parsing: "public.orders"), TableName(schema: "public", name: "orders"))
        XCTAssertEqual(TableName(parsing: "orders"), TableName(schema: nil, name: "orders"))
        XCTAssertEqual(TableName(parsing: "Sales.Order Items"), TableName(schema: "Sales", name: "Order Items"))
        XCTAssertEqual(TableName(parsing: #""sales.eu"."Order ""Items"" select""#), TableName(schema: "sales.eu", name: #"Order "Items" select"#))
        XCTAssertEqual(TableName(parsing: #"public."a.b""#), TableName(schema: "public", name: "a.b"))
        XCTAssertEqual(SQL.qualified(schema: "sales.eu", name: #"Order "Items""#), #""sales.eu"."Order ""Items""""#)
    }
}
