import ShiftCore
import XCTest

/// Connection strings lose their secrets before any log line, error or state file (docs/CONFIG.md).
final class RedactionTests: XCTestCase {
    func testPasswordsInUserInfoAndKeyValues() {
        XCTAssertEqual(Redaction.redact("postgresql://etl:s3cret@host:5439/dev"), "postgresql://etl:***@host:5439/dev")
        XCTAssertEqual(Redaction.redact("host=h password=s3cret user=u"), "host=h password=*** user=u")
    }

    /// MONGODB-AWS takes a session token in `authMechanismProperties`; it authorizes like a password.
    func testAWSSessionTokenInMongoURL() {
        let url = "mongodb://AKIA1:secret@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:FQoToken&tls=true"
        let redacted = Redaction.redact(url)
        XCTAssertFalse(redacted.contains("FQoToken") || redacted.contains("secret"), redacted)
        XCTAssertTrue(redacted.contains("authMechanism=MONGODB-AWS") && redacted.contains("tls=true"), redacted)
    }
}
