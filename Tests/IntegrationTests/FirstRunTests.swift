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

    /// `lag` on a damaged state database says so (exit 4, the file named); it read as "nothing has run yet" and
    /// passed `--max-lag`.
    func testLagOnADamagedStateDatabaseFails() throws {
        let directory = NSTemporaryDirectory() + "firstrun-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/state", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data((0..<8192).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: directory + "/state/state.db"))
        try """
        state: \(directory)/state
        redshift: { url: "postgresql://127.0.0.1:1/x", dialect: postgres }
        mongo: { url: "mongodb://127.0.0.1:1/", database: app }
        streams:
          - { name: s, from: { table: public.t }, to: { collection: t }, key: [id], watermark: updated_at }
        """.write(toFile: directory + "/m.yaml", atomically: true, encoding: .utf8)
        let result = try MongoshiftProcess.run(["lag", "--config", directory + "/m.yaml", "--max-lag", "5m"], timeout: 60)
        XCTAssertEqual(result.status, 4, result.stdout + result.stderr)
        XCTAssertTrue(result.stderr.contains(directory + "/state/state.db"), result.stderr)
    }
}
