import BSON
import Foundation
import Logging
import PostgresClient
@testable import Replication
import TestSupport
import XCTest

/// A key column that becomes text is converted in SQL (`TargetSQL.keyConverted`); the documents' `_id`s are
/// written from then on in Swift (`KeyText`). The two must agree to the byte, or later changes of those documents
/// miss their rows and leave a second one. Checked on PostgreSQL and on the Redshift stand-in for every column
/// type a key can have had: the value is stored as the column holds it, converted by the SQL, and compared.
/// (DOUBLE key columns are made by earlier versions only — a double `_id` is key text now — and Redshift prints
/// doubles with 15 significant digits: one that needs 16 or 17 converts inexactly there, which `verify` reports.)
final class KeyTextConversionTests: XCTestCase {
    static let cases: [(ColumnType, [BSON])] = [
        (.integer, [.int32(5), .int32(-7), .int32(.max), .int32(.min)]),
        (.bigint, [.int64(.min), .int64(.max), .int64(0), .int32(12)]),
        (.double, [.double(1.5), .double(-0.1), .double(0.00001), .double(1.2345e-7), .double(123456.789), .double(5.0),
                   .double(-0.0), .double(1e20), .double(-9007199254740993.0), .double(0x1p62)]),
        (.decimal(scale: 2), [.decimal128(Decimal128("8.25")!), .decimal128(Decimal128("-0.50")!), .decimal128(Decimal128("100.00")!),
                              .decimal128(Decimal128("0.1")!), .int32(3)]),
        (.decimal(scale: 2), [.decimal128(Decimal128("100000000000000000000.00")!), .decimal128(Decimal128("-100000000000000000000.50")!)]),
        (.decimal(scale: 0), [.decimal128(Decimal128("12345678901234567890123")!), .decimal128(Decimal128("-42")!)]),
        (.timestamp, [.datetime(1_700_000_000_123), .datetime(-1), .datetime(0), .datetime(-62_135_596_800_000), .datetime(253_402_300_799_999)]),
        (.char24, [.objectId(ObjectId(hex: "6b146ecf4be695d5d7b12a2c")!)]),
        (.boolean, [.bool(true), .bool(false)]),
        (.binary(64_000), [.binary(BSONBinary(subtype: 4, data: Array(0..<16))), .binary(BSONBinary(subtype: 0, data: [0xFF, 0x00, 0x7F]))]),
    ]

    /// Each case's values stored in a column of its type (as the applier sends them: binaries as `\x`-hex text
    /// for bytea, through FROM_HEX for VARBYTE), read back through the SQL `expression` makes of the column.
    func readBack(url: String, dialect: SQLDialect, cases: [(ColumnType, [BSON])],
                  expression: (TargetSQL, String, ColumnType) -> String) async throws -> [(ColumnType, BSON, String?)] {
        let c = try await PostgresConnection.connect(url)
        let table = TestServers.uniqueName("conv")
        var out: [(ColumnType, BSON, String?)] = []
        for (type, values) in cases {
            let sql = TargetSQL(dialect: dialect, table: TableName(schema: "public", name: table))
            try await c.execute("CREATE TABLE public.\(table) (n integer, v \(type.sql(dialect)))")
            for (n, value) in values.enumerated() {
                var text = PlainText()
                try ValueText.write(value, as: type, column: "v", byteaPrefix: dialect == .postgres, to: &text)
                let parameter = if case .binary = type, dialect == .redshift { "FROM_HEX($1)" } else { "$1" }
                try await c.query("INSERT INTO public.\(table) (n, v) VALUES (\(n), \(parameter))", [String(decoding: text.bytes, as: UTF8.self)])
            }
            let rows = try await c.query("SELECT n, \(expression(sql, SQL.identifier("v"), type)) FROM public.\(table) ORDER BY n").rows
            try await c.execute("DROP TABLE public.\(table)")
            XCTAssertEqual(rows.count, values.count)
            out += zip(rows, values).map { (type, $1, $0[1]) }
        }
        return out
    }

    func assertConversionsAgree(url: String, dialect: SQLDialect) async throws {
        for (type, value, text) in try await readBack(url: url, dialect: dialect, cases: Self.cases, expression: { $0.keyConverted($1, from: $2) }) {
            XCTAssertEqual(text, KeyText.text(value), "\(dialect) \(type): \(ExtendedJSON.relaxed(value))")
        }
    }

    func testPostgreSQLConversionsMatchTheKeyText() async throws {
        try await assertConversionsAgree(url: try TestServers.requirePostgres(), dialect: .postgres)
    }

    func testRedshiftConversionsMatchTheKeyText() async throws {
        try await assertConversionsAgree(url: try TestServers.requireRedshift().url, dialect: .redshift)
    }

    /// A column that becomes VARCHAR holds its old rows' values as the text new rows get (`ValueText.scalarText`):
    /// booleans `true`/`false` (a CAST on Redshift, which casts no BOOLEAN to text, failed the widening on every
    /// retry), binaries base64 (not hex), dates with their milliseconds (PostgreSQL's text dropped them).
    func assertTextConversionsMatchNewRows(url: String, dialect: SQLDialect) async throws {
        let cases = Self.cases.filter { type, _ in
            switch type { case .boolean, .binary, .timestamp, .integer, .bigint, .char24: true; default: false }
        }
        for (type, value, text) in try await readBack(url: url, dialect: dialect, cases: cases,
                                                      expression: { $0.textConverted($1, from: $2, to: .varchar(65535)) }) {
            XCTAssertEqual(text, ValueText.scalarText(value), "\(dialect) \(type): \(ExtendedJSON.relaxed(value))")
        }
    }

    func testPostgreSQLTextConversionsMatchNewRows() async throws {
        try await assertTextConversionsMatchNewRows(url: try TestServers.requirePostgres(), dialect: .postgres)
    }

    func testRedshiftTextConversionsMatchNewRows() async throws {
        try await assertTextConversionsMatchNewRows(url: try TestServers.requireRedshift().url, dialect: .redshift)
    }

    /// Two workers applying one stream's snapshot pages (a shared snapshot) learn columns apart: a change starts
    /// from the column as the target has it. Worker B made `price` DOUBLE (and stored 1.5); worker A, which still
    /// knew it as INTEGER, "widened" it to BIGINT — every fraction was rounded. A column B added as BIGINT that A
    /// adds as text becomes text.
    func assertChangesStartFromTheTargetsColumns(url: String, dialect: SQLDialect) async throws {
        let c = try await PostgresConnection.connect(url)
        let schemaName = TestServers.uniqueName("twoworkers")
        try await c.execute("CREATE SCHEMA \(schemaName)")
        defer { Task { _ = try? await c.execute("DROP SCHEMA \(schemaName) CASCADE") } }
        let sql = TargetSQL(dialect: dialect, table: TableName(schema: schemaName, name: "apps"))
        let base = TableSchema(columns: [.init(name: "_id", path: "_id", type: .integer), .init(name: "price", path: "price", type: .integer)])
        try await c.execute(sql.createTable(base))
        let changer = SchemaChanger(sql: sql, logger: Logger(label: "test"))
        var b = base
        b.columns[1].type = .double
        b.columns.append(.init(name: "code", path: "code", type: .bigint))
        try await changer.apply([.widenColumn(b.columns[1], from: .integer), .addColumn(b.columns[2])], schema: b, previous: base, on: c)
        try await c.execute("INSERT INTO \(schemaName).apps (_id, price, code) VALUES (1, 1.5, 7)")
        var a = base
        a.columns[1].type = .bigint
        a.columns.append(.init(name: "code", path: "code", type: .varchar(16)))
        try await changer.apply([.widenColumn(a.columns[1], from: .integer), .addColumn(a.columns[2])], schema: a, previous: base, on: c)
        let types = try await c.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'apps'",
                                      [schemaName]).rows.reduce(into: [String: String]()) { $0[$1[0]!] = $1[1] }
        XCTAssertEqual(types["price"], "double precision", "\(dialect): kept as wide as the target had it")
        XCTAssertEqual(types["code"], "character varying", "\(dialect)")
        let row = try await c.query("SELECT CAST(price AS varchar), code FROM \(schemaName).apps").rows.first
        XCTAssertEqual(row?[0], "1.5")
        XCTAssertEqual(row?[1], "7")
    }

    func testPostgreSQLChangesStartFromTheTargetsColumns() async throws {
        try await assertChangesStartFromTheTargetsColumns(url: try TestServers.requirePostgres(), dialect: .postgres)
    }

    func testRedshiftChangesStartFromTheTargetsColumns() async throws {
        try await assertChangesStartFromTheTargetsColumns(url: try TestServers.requireRedshift().url, dialect: .redshift)
    }

    /// A key widening runs again when its batch is retried (the load failed after the schema change, or a crash
    /// came before the commit): the rows already converted must not be converted twice.
    func assertKeyWideningRunsTwiceSafely(url: String, dialect: SQLDialect) async throws {
        let c = try await PostgresConnection.connect(url)
        let schemaName = TestServers.uniqueName("keytwice")
        try await c.execute("CREATE SCHEMA \(schemaName)")
        defer { Task { _ = try? await c.execute("DROP SCHEMA \(schemaName) CASCADE") } }
        let sql = TargetSQL(dialect: dialect, table: TableName(schema: schemaName, name: "apps"))
        let before = TableSchema(columns: [.init(name: "_id", path: "_id", type: .integer), .init(name: "n", path: "n", type: .integer)])
        try await c.execute(sql.createTable(before))
        try await c.execute("INSERT INTO \(schemaName).apps (_id, n) VALUES (5, 1), (6, 2)")
        var after = before
        after.columns[0].type = .varchar(256)
        let changer = SchemaChanger(sql: sql, logger: Logger(label: "test"))
        for _ in 0..<2 {
            try await changer.apply([.widenColumn(after.columns[0], from: .integer)], schema: after, previous: before, on: c)
        }
        let keys = try await c.query("SELECT _id FROM \(schemaName).apps ORDER BY n").rows.map { $0[0] }
        XCTAssertEqual(keys, [#"{"$numberLong":"5"}"#, #"{"$numberLong":"6"}"#])
    }

    func testPostgreSQLKeyWideningRunsTwiceSafely() async throws {
        try await assertKeyWideningRunsTwiceSafely(url: try TestServers.requirePostgres(), dialect: .postgres)
    }

    func testRedshiftKeyWideningRunsTwiceSafely() async throws {
        try await assertKeyWideningRunsTwiceSafely(url: try TestServers.requireRedshift().url, dialect: .redshift)
    }
}
