import Foundation
import ShiftCore
import XCTest

/// One process per state directory: a second writer is refused with the holder named, and a lock never outlives
/// its holder.
final class WorkerLockTests: XCTestCase {
    func testSecondHolderIsRefusedUntilTheFirstLetsGo() throws {
        let dir = NSTemporaryDirectory() + "workerlock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var first: WorkerLock? = try WorkerLock.acquire(directory: dir, command: "run")
        XCTAssertThrowsError(try WorkerLock.acquire(directory: dir, command: "snapshot")) { error in
            guard let held = error as? WorkerLock.Held else { return XCTFail("\(error)") }
            XCTAssertEqual(held.holder, "pid \(getpid()), mongoshift run")
            XCTAssertTrue(held.description.contains(dir), held.description)
        }
        withExtendedLifetime(first) {}
        first = nil
        XCTAssertNoThrow(try WorkerLock.acquire(directory: dir, command: "snapshot"))
    }
}
