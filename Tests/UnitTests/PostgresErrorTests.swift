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
        // S3 throttling and server errors Redshift meets inside COPY/UNLOAD: S3 says to retry them.
        XCTAssertTrue(server("XX000", "S3ServiceException:Please reduce your request rate.,Status 503,Error SlowDown,Rid 1,CanRetry 1").isTransient)
        XCTAssertTrue(server("XX000", "S3ServiceException:We encountered an internal error. Please try again.,Status 500,Error InternalError,Rid 2").isTransient)
        XCTAssertFalse(server("XX000", "S3ServiceException:Access Denied,Status 403,Error AccessDenied,Rid 3").isTransient)
        XCTAssertFalse(server("XX000", "S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket").isTransient)
    }
}

/// COPY/UNLOAD authorization clauses never reach an error or a log line.
final class SQLRedactionTests: XCTestCase {
    func testSecretsInAuthorizationClausesAreMasked() {
        let sql = "COPY s FROM 's3://b/m' ACCESS_KEY_ID 'AKIA1' SECRET_ACCESS_KEY 'se''cret/+x' SESSION_TOKEN 'tok' REGION 'us-east-1' MANIFEST"
        let redacted = PostgresError(code: .server, sqlState: "XX000", message: "m", query: sql).query ?? ""
        XCTAssertFalse(redacted.contains("se''cret") || redacted.contains("tok'"), redacted)
        XCTAssertTrue(redacted.contains("SECRET_ACCESS_KEY '***'") && redacted.contains("SESSION_TOKEN '***'"), redacted)
        XCTAssertTrue(redacted.contains("ACCESS_KEY_ID 'AKIA1'") && redacted.contains("REGION 'us-east-1'"), redacted)
        let old = "COPY s FROM 's3://b/m' CREDENTIALS 'aws_access_key_id=A;aws_secret_access_key=S' CSV"
        XCTAssertEqual(PostgresError(code: .server, message: "m", query: old).query, "COPY s FROM 's3://b/m' CREDENTIALS '***' CSV")
    }
}
