import PostgresClient
import XCTest

/// Which server errors a retry on a fresh connection can cure (docs/RELIABILITY.md).
final class PostgresErrorTests: XCTestCase {
    private func server(_ state: String, _ message: String, detail: String? = nil, query: String? = nil) -> PostgresError {
        PostgresError(code: .server, sqlState: state, message: message, detail: detail, query: query)
    }

    func testConcurrentCreateIfNotExistsIsRetried() {
        let racedType = server("23505", "duplicate key value violates unique constraint \"pg_type_typname_nsp_index\"",
                               detail: "Key (typname, typnamespace)=(mongoshift_checkpoints, 16512) already exists.")
        XCTAssertTrue(racedType.isTransient)
        XCTAssertTrue(server("42P07", "relation \"t\" already exists", query: "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (a int)").isTransient)
        XCTAssertTrue(server("42P06", "schema \"s\" already exists", query: "CREATE SCHEMA IF NOT EXISTS \"s\"").isTransient)
    }

    func testDuplicatesThatNoRetryCuresStayPermanent() {
        XCTAssertFalse(server("23505", "duplicate key value violates unique constraint \"orders_pkey\"").isTransient)
        XCTAssertFalse(server("42P07", "relation \"t\" already exists", query: "CREATE TABLE \"s\".\"t\" (a int)").isTransient)
    }

    func testRedshiftSerializableIsolationViolationIsRetried() {
        let conflict = server("XX000", "1023 Serializable isolation violation on table - 100, transactions forming the cycle are: 1, 2")
        XCTAssertTrue(conflict.isRedshiftSerializationConflict)
        XCTAssertTrue(conflict.isTransient)
        XCTAssertFalse(server("XX000", "Invalid digit, Value 'x'").isTransient)
    }
}
