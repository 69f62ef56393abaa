import BSON
import Replication
import StateStore
import XCTest

/// The stream lifecycle as a value: every allowed transition, and the refused ones leave the state unchanged.
final class StreamLifecycleTests: XCTestCase {
    typealias S = StreamLifecycle.State

    func after(_ state: S, _ event: StreamLifecycle.Event) -> S? {
        var lifecycle = StreamLifecycle(state)
        do { try lifecycle.apply(event) } catch { XCTAssertEqual(lifecycle.state, state, "a refused transition changes nothing"); return nil }
        return lifecycle.state
    }

    func testTransitions() {
        XCTAssertEqual(after(.new, .beginSnapshot), .snapshotting)
        XCTAssertEqual(after(.snapshotting, .beginSnapshot), .snapshotting)
        XCTAssertEqual(after(.snapshotting, .completeSnapshot), .streaming)
        XCTAssertNil(after(.new, .completeSnapshot))
        XCTAssertNil(after(.streaming, .completeSnapshot))
        XCTAssertNil(after(.streaming, .beginSnapshot))
        XCTAssertEqual(after(.streaming, .fail), .failed(from: .streaming))
        XCTAssertEqual(after(.failed(from: .snapshotting), .fail), .failed(from: .snapshotting))
        XCTAssertEqual(after(.failed(from: .snapshotting), .resume), .snapshotting)
        XCTAssertEqual(after(.streaming, .resume), .streaming)
        for state: S in [.new, .snapshotting, .streaming, .failed(from: .streaming)] {
            XCTAssertEqual(after(state, .reset), .new)
            XCTAssertEqual(after(state, .reposition), .streaming, "an operator reset to a position tails from there")
        }
    }

    func testResetTargets() {
        XCTAssertEqual(ResetTarget(parsing: "snapshot"), .snapshot)
        XCTAssertEqual(ResetTarget(parsing: "now"), .now)
        XCTAssertEqual(ResetTarget(parsing: "time:2026-12-04T22:10:37Z"), .time(BSONTimestamp(seconds: 1_796_422_237, increment: 0)))
        XCTAssertEqual(ResetTarget(parsing: "time:2026-12-04T23:10:37.5+01:00"), .time(BSONTimestamp(seconds: 1_796_422_237, increment: 0)))
        XCTAssertEqual(ResetTarget(parsing: #"token:{"_data":"8263AB"}"#), .token(["_data": "8263AB"]))
        XCTAssertEqual(ResetTarget(parsing: "token:8263ab"), .token(["_data": "8263ab"]))
        XCTAssertEqual(ResetTarget(parsing: "watermark:2026-01-01 00:00:00"), .watermark("2026-01-01 00:00:00"))
        for bad in ["", "later", "time:yesterday", "time:1969-12-31T23:59:59Z", "token:", "token:zz", #"token:{"x":1}"#, "watermark:", "lsn:1"] {
            XCTAssertNil(ResetTarget(parsing: bad), bad)
        }
    }
}
