import BSON
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

    /// Redshift: 'b' = 'b ' in comparisons, so a text key is ordered and compared by its LENGTH too; PostgreSQL
    /// (where they differ, and the key's index must serve the order) gets the plain key order.
    func testTextKeysAreOrderedByLengthWhereTrailingBlanksCompareEqual() {
        var t = table(keys: ["id"])
        t.columns[0] = PostgresColumn(name: "code", typeOID: PostgresType.varchar, typeModifier: 20)
        let plain = KeysetQuery.snapshotPage(table: t, after: ["b "], lower: nil, upper: nil, limit: 10)
        XCTAssertTrue(plain.sql.hasSuffix(#"WHERE "code" > $1 AND "code" IS NOT NULL ORDER BY "code" LIMIT 10"#), plain.sql)
        t.keysIgnoreTrailingBlanks = true
        let page = KeysetQuery.snapshotPage(table: t, after: ["b é "], lower: nil, upper: nil, limit: 10)
        XCTAssertTrue(page.sql.contains(#"("code" > $1 OR ("code" = $1 AND LENGTH("code") > CAST($2 AS INTEGER)))"#), page.sql)
        XCTAssertTrue(page.sql.hasSuffix(#"ORDER BY "code", LENGTH("code") LIMIT 10"#), page.sql)
        XCTAssertEqual(page.params, ["b é ", "4"], "characters, trailing blanks included")
        let poll = KeysetQuery.tailPoll(table: t, castType: "timestamp", afterWatermark: "2026-01-01 00:00:00", afterKey: ["b"], upperBound: "2026-01-02 00:00:00", limit: 5)
        XCTAssertTrue(poll.sql.contains(#"ORDER BY "updated_at", "code", LENGTH("code") LIMIT 5"#), poll.sql)
        XCTAssertTrue(poll.sql.contains(#"LENGTH("code") > CAST($3 AS INTEGER)"#), poll.sql)
        let rows = KeysetQuery.keyRows(table: t, key: ["b  "], limit: 3)
        XCTAssertTrue(rows.sql.hasSuffix(#"WHERE "code" = $1 AND LENGTH("code") = CAST($2 AS INTEGER) LIMIT 3"#), rows.sql)
        XCTAssertEqual(rows.params, ["b  ", "3"])
        // CHAR pads its values alike: keys differing in trailing blanks are one value there, no LENGTH needed.
        t.columns[0] = PostgresColumn(name: "code", typeOID: PostgresType.bpchar, typeModifier: 20)
        XCTAssertFalse(KeysetQuery.snapshotPage(table: t, after: ["b"], lower: nil, upper: nil, limit: 10).sql.contains("LENGTH"))
    }

    func testRepeatCheckReadsEveryRowOfOneKeyAndCountsThem() {
        let (rows, params) = KeysetQuery.keyRows(table: table(keys: ["a", "b"]), key: ["1", "x"], limit: 50)
        XCTAssertEqual(rows, #"SELECT "a", "b", "Select", "updated_at" FROM "Sales Data"."or""ders" WHERE "a" = $1 AND "b" = $2 LIMIT 50"#)
        XCTAssertEqual(params, ["1", "x"])
        let (count, _) = KeysetQuery.keyRowCount(table: table(keys: ["id"]), key: ["7"])
        XCTAssertEqual(count, #"SELECT CAST(count(*) AS varchar) FROM "Sales Data"."or""ders" WHERE "id" = $1"#)
    }

    func testTailPollUsesCompositeWatermarkAndABoundParameter() {
        let t = table(keys: ["id"])
        let (sql, params) = KeysetQuery.tailPoll(table: t, castType: "timestamp", afterWatermark: "2024-01-01 00:00:00", afterKey: ["7"],
                                                 upperBound: "2024-01-01 00:05:00.000000", limit: 100)
        XCTAssertEqual(sql, #"SELECT "id", "Select", "updated_at" FROM "Sales Data"."or""ders" WHERE ("updated_at" > CAST($1 AS timestamp) OR ("updated_at" = CAST($1 AS timestamp) AND "id" > $2)) AND "updated_at" <= CAST($3 AS timestamp) AND "id" IS NOT NULL ORDER BY "updated_at", "id" LIMIT 100"#)
        XCTAssertEqual(params, ["2024-01-01 00:00:00", "7", "2024-01-01 00:05:00.000000"])
        let (first, _) = KeysetQuery.tailPoll(table: t, castType: "bigint", afterWatermark: nil, afterKey: nil, upperBound: "42", limit: 10)
        XCTAssertTrue(first.contains(#""updated_at" IS NOT NULL AND "updated_at" <= CAST($1 AS bigint)"#), first)
        XCTAssertFalse(first.contains("now()") || first.contains("GETDATE") || first.contains("DATEADD"), "no clock arithmetic in SQL")
        // A NULL key is no position: no poll or lookback page reads one (they are counted and reported instead).
        let (composite, _) = KeysetQuery.tailPoll(table: table(keys: ["a", "b"]), castType: "bigint", afterWatermark: "1", afterKey: ["x", "y"],
                                                  upperBound: "42", limit: 10)
        XCTAssertTrue(composite.contains(#""a" IS NOT NULL AND "b" IS NOT NULL ORDER BY"#), composite)
        let (lookback, _) = KeysetQuery.lookbackPage(table: t, castType: "bigint", lower: "1", upper: "42", afterWatermark: nil, afterKey: nil, limit: 10)
        XCTAssertTrue(lookback.contains(#"AND "id" IS NOT NULL ORDER BY"#), lookback)
    }

    func testPollBoundHoldsBeforeTheOldestOpenWriter() {
        let minute: Int64 = 60_000_000
        let now: Int64 = 1_700_000_000_000_000
        let bound = PollBound(kind: .time(withTimeZone: false), safetyLag: .seconds(60))
        // No writer: now - safety_lag.
        XCTAssertEqual(bound.decide(TransactionHorizon(now: now), position: nil), .init(value: now - minute, heldBy: nil, holdSeconds: 0))
        // A writer open since 3 minutes: just before its start, and the hold is reported.
        let writer = TransactionHorizon.OpenTransaction(pid: "42", xid: "7", start: now - 3 * minute)
        let held = bound.decide(TransactionHorizon(now: now, oldestWriter: writer), position: nil)
        XCTAssertEqual(held.value, now - 3 * minute - 1)
        XCTAssertEqual(held.heldBy, writer)
        XCTAssertEqual(held.holdSeconds, 120, accuracy: 0.001)
        // A writer younger than safety_lag does not move the bound.
        let young = TransactionHorizon.OpenTransaction(pid: "43", xid: nil, start: now - 10_000_000)
        XCTAssertNil(bound.decide(TransactionHorizon(now: now, oldestWriter: young), position: nil).heldBy)
    }

    /// Stamps truncated to whole seconds (Redshift's GETDATE(), `timestamp(0)`) fall below the instant they were
    /// made: a writer that began at 12:00:00.7 stamps 12:00:00, so the bound stops before 12:00:00 — it stopped at
    /// 12:00:00.699999, read other rows of 12:00:00 and moved past the writer's smaller keys, which then committed
    /// behind the position and were never tailed.
    func testPollBoundStopsBeforeTheUnitCoarseStampsFallIn() {
        let second: Int64 = 1_000_000
        let now: Int64 = 1_700_000_000 * second + 900_000
        let bound = PollBound(kind: .time(withTimeZone: false), safetyLag: .zero, stampUnit: second)
        let writer = TransactionHorizon.OpenTransaction(pid: "42", xid: nil, start: 1_700_000_000 * second + 700_000)
        XCTAssertEqual(bound.decide(TransactionHorizon(now: now, oldestWriter: writer), position: nil).value, 1_700_000_000 * second - 1)
        XCTAssertEqual(bound.decide(TransactionHorizon(now: now), position: nil).value, 1_700_000_000 * second - 1,
                       "a statement running now stamps this second too")
        let exact = PollBound(kind: .time(withTimeZone: false), safetyLag: .zero)
        XCTAssertEqual(exact.decide(TransactionHorizon(now: now, oldestWriter: writer), position: nil).value, writer.start - 1)
        let before1970 = PollBound(kind: .time(withTimeZone: false), safetyLag: .zero, stampUnit: second)
        XCTAssertEqual(before1970.decide(TransactionHorizon(now: -1_500_000), position: nil).value, -2 * second - 1)
    }

    func testIntegerPollBoundUsesTheLargestValueVisibleWhenTheWriterStarted() {
        let second: Int64 = 1_000_000
        var bound = PollBound(kind: .integer, safetyLag: .zero)
        // Fresh start: nothing past the current position until a sample exists.
        XCTAssertEqual(bound.decide(TransactionHorizon(now: 100 * second), position: 5).value, 5)
        bound.sample(time: 100 * second, maxVisible: 10, oldestNeeded: 100 * second)
        XCTAssertEqual(bound.decide(TransactionHorizon(now: 100 * second), position: 5).value, 10)
        // A writer opened at t=101 s holds values above 10; rows up to 30 committed since must wait for it.
        bound.sample(time: 102 * second, maxVisible: 30, oldestNeeded: 101 * second)
        let writer = TransactionHorizon.OpenTransaction(pid: "9", xid: nil, start: 101 * second)
        let held = bound.decide(TransactionHorizon(now: 102 * second, oldestWriter: writer), position: 10)
        XCTAssertEqual(held.value, 10)
        XCTAssertEqual(held.heldBy, writer)
        // It commits: the bound catches up.
        bound.sample(time: 103 * second, maxVisible: 31, oldestNeeded: 103 * second)
        XCTAssertEqual(bound.decide(TransactionHorizon(now: 103 * second), position: 10).value, 31)
        XCTAssertEqual(bound.samples.count, 1, "samples older than any possible bound are dropped")
    }

    func testWatermarkBoundsAreExactText() {
        XCTAssertEqual(WatermarkKind.time(withTimeZone: false).boundText(1_700_000_000_123_456), "2023-11-14 22:13:20.123456")
        XCTAssertEqual(WatermarkKind.time(withTimeZone: true).boundText(0), "1970-01-01 00:00:00.000000+00")
        XCTAssertEqual(WatermarkKind.time(withTimeZone: false).value(of: "2023-11-14 22:13:20.123456"), 1_700_000_000_123_456)
        XCTAssertEqual(WatermarkKind.integer.value(of: "-9223372036854775808"), .min)
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

    func testKeysInAscendingOrderNeedNoIndexAndRepeatsStillCollapse() {
        func upserts(_ keys: [BSON]) -> [Change] { keys.enumerated().map { Change(operation: .upsert, key: $1, document: ["n": .int32(Int32($0))]) } }
        let ascending = upserts([.int64(1), .int64(2), .int64(3), .int64(40)])
        XCTAssertEqual(ascending.latestPerKey(), ascending)
        XCTAssertEqual(upserts(["a", "b", "c"]).latestPerKey().count, 3)
        // Equal neighbours at the end of an otherwise ascending page: the later one wins.
        let repeated = upserts([.int64(1), .int64(2), .int64(2)]).latestPerKey()
        XCTAssertEqual(repeated.map(\.key), [.int64(1), .int64(2)])
        XCTAssertEqual(repeated[1].document, ["n": .int32(2)])
        // Out of order (a tail batch) with a repeat, and mixed types, go through the index as before.
        XCTAssertEqual(upserts(["b", "a", "b"]).latestPerKey().map(\.key), ["b", "a"])
        XCTAssertEqual(upserts([.int64(1), .string("1"), .int64(1)]).latestPerKey().count, 2)
    }

    /// Keys are compared as MongoDB, Redshift and PostgreSQL compare them: by their bytes. Swift's `String ==`
    /// calls canonically equivalent spellings equal, and one of two distinct rows was dropped from the batch.
    func testKeysSpelledDifferentlyAreDifferentKeysEvenWhenUnicodeCallsThemEquivalent() {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        XCTAssertEqual(composed, decomposed, "Swift's view (the trap)")
        let changes = [Change(operation: .upsert, key: .string(composed), document: ["v": 1]),
                       Change(operation: .upsert, key: .string(decomposed), document: ["v": 2])]
        XCTAssertEqual(changes.latestPerKey().count, 2)
        XCTAssertNotEqual(BSON.string(composed), BSON.string(decomposed))
        XCTAssertEqual(Set([BSON.string(composed), .string(decomposed), .string(composed)]).count, 2)
        XCTAssertNotEqual(BSON.array([.string(composed)]), BSON.array([.string(decomposed)]))
        XCTAssertNotEqual(BSON.regex(pattern: composed, options: ""), BSON.regex(pattern: decomposed, options: ""))
        XCTAssertEqual(BSON.string(composed), BSON.string("caf\u{E9}"))
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
