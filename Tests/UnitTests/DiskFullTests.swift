import Foundation
@testable import Replication
import ShiftCore
import SQLiteStore
@testable import StateStore
import XCTest
import Zstd

/// A full disk is back-pressure, not a failure (docs/ARCHITECTURE.md, "Spool"): every writer that can meet it says
/// so with an error retry policies treat as transient. The COPY staging files and the state database used to fail
/// with errors taken as permanent, and a stream whose spool had filled the disk failed instead of draining it.
final class DiskFullTests: XCTestCase {
    func testAStagingFileOnAFullDiskIsATransientNoSpaceError() throws {
        // /dev/full refuses every write with ENOSPC.
        let writer = try ZstdFileWriter(path: "/dev/full")
        XCTAssertThrowsError(try { try writer.write((0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }); try writer.finish() }()) { error in
            guard let file = error as? FileError else { return XCTFail("\(type(of: error)): \(error)") }
            XCTAssertEqual(file.code, .noSpace)
            XCTAssertTrue(file.description.hasPrefix("/dev/full: write"), file.description)
            XCTAssertTrue(RetryPolicy.isTransient(error), "waited out, not a failed stream")
        }
    }

    func testAStagingFileThatCannotBeCreatedIsAPermanentError() {
        XCTAssertThrowsError(try ZstdFileWriter(path: "/nonexistent-dir/x.json.zst")) { error in
            XCTAssertEqual((error as? FileError)?.code, .missing)
            XCTAssertFalse(RetryPolicy.isTransient(error))
        }
    }

    func testADeadLetterOnAFullDiskIsWaitedOut() async throws {
        let directory = NSTemporaryDirectory() + "dl-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try DeadLetterFile(stateDirectory: directory, stream: "s")
        try FileManager.default.createSymbolicLink(atPath: file.path, withDestinationPath: "/dev/full")
        do {
            try await file.append(stream: "s", [.init(key: .int32(1), reason: "bad")])
            XCTFail("/dev/full took the entry")
        } catch {
            XCTAssertTrue(RetryPolicy.isTransient(error), "a full disk waits: \(error)")
        }
    }

    func testAFullStateDatabaseIsTransient() {
        let full = SQLiteStateDatabase.translate(SQLiteError(code: 13, message: "database or disk is full", sql: "INSERT INTO segments …"))
        XCTAssertEqual(full.code, .noSpace)
        XCTAssertTrue(RetryPolicy.isTransient(full))
        let readOnly = SQLiteStateDatabase.translate(SQLiteError(code: 8, message: "attempt to write a readonly database", sql: nil))
        XCTAssertFalse(RetryPolicy.isTransient(readOnly))
    }
}
