import BSON
import Foundation
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
        (.decimal(scale: 0), [.decimal128(Decimal128("12345678901234567890123")!), .decimal128(Decimal128("-42")!)]),
        (.timestamp, [.datetime(1_700_000_000_123), .datetime(-1), .datetime(0), .datetime(-62_135_596_800_000), .datetime(253_402_300_799_999)]),
        (.char24, [.objectId(ObjectId(hex: "6b146ecf4be695d5d7b12a2c")!)]),
        (.boolean, [.bool(true), .bool(false)]),
    ]

    func assertConversionsAgree(url: String, dialect: SQLDialect) async throws {
        let c = try await PostgresConnection.connect(url)
        let table = TestServers.uniqueName("keyconv")
        for (type, values) in Self.cases {
            let sql = TargetSQL(dialect: dialect, table: TableName(schema: "public", name: table))
            try await c.execute("CREATE TABLE public.\(table) (n integer, v \(type.sql(dialect)))")
            for (n, value) in values.enumerated() {
                try await c.query("INSERT INTO public.\(table) (n, v) VALUES (\(n), $1)", [try ValueText.text(value, as: type, column: "v")])
            }
            let rows = try await c.query("SELECT n, \(sql.keyConverted(SQL.identifier("v"), from: type)) FROM public.\(table) ORDER BY n").rows
            try await c.execute("DROP TABLE public.\(table)")
            XCTAssertEqual(rows.count, values.count)
            for (row, value) in zip(rows, values) {
                XCTAssertEqual(row[1], KeyText.text(value), "\(dialect) \(type): \(ExtendedJSON.relaxed(value))")
            }
        }
    }

    func testPostgreSQLConversionsMatchTheKeyText() async throws {
        try await assertConversionsAgree(url: try TestServers.requirePostgres(), dialect: .postgres)
    }

    func testRedshiftConversionsMatchTheKeyText() async throws {
        try await assertConversionsAgree(url: try TestServers.requireRedshift().url, dialect: .redshift)
    }
}
