import Foundation
import TestSupport
import XCTest

/// Issue 18, "a smooth first run": what a new user meets before any server is involved — usage mistakes, a
/// config file that is not there, environment variables not exported yet.
final class FirstRunTests: XCTestCase {
    func testUsageErrorsExitTwoAsDocumented() throws {
        for arguments in [["lag"], ["run", "--config"], ["snapshot", "--no-such-flag", "--config", "x.yaml"], ["frobnicate"]] {
            let result = try MongoshiftProcess.run(arguments, timeout: 30)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("Error:") || result.stderr.contains("error:"), result.stderr)
        }
        XCTAssertEqual(try MongoshiftProcess.run(["--help"], timeout: 30).status, 0)
        XCTAssertEqual(try MongoshiftProcess.run(["lag", "--help"], timeout: 30).status, 0)
    }

    func testMissingConfigFileSaysWhy() throws {
        let result = try MongoshiftProcess.run(["check", "--config", "/nonexistent/mongoshift.yaml"], timeout: 30)
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("/nonexistent/mongoshift.yaml: cannot read the file: No such file or directory"), result.stderr)
    }

    func testEveryMissingVariableIsNamedAtOnce() throws {
        let path = NSTemporaryDirectory() + "firstrun-\(UUID().uuidString).yaml"
        try """
        redshift: { url: "${FIRSTRUN_PG_URL}" }
        mongo: { url: "${FIRSTRUN_MONGO_URL}", database: app }
        streams:
          - { name: s, from: { table: public.t }, to: { collection: t }, key: [id], watermark: updated_at }
        """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try MongoshiftProcess.run(["check", "--config", path], timeout: 30)
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertTrue(result.stderr.contains("environment variables not set: FIRSTRUN_PG_URL (line 1), FIRSTRUN_MONGO_URL (line 2)"), result.stderr)
    }
}
