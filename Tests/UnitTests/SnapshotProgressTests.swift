@testable import Replication
import XCTest

/// Progress against an estimate (planner statistics, a collection's count): past it, neither 100 % nor "ETA 0s"
/// while partitions remain — the remaining time is unknown.
final class SnapshotProgressTests: XCTestCase {
    func progress(done: Int, total: Int, partitions: Int, of all: Int) -> SnapshotProgress {
        SnapshotProgress(stream: "s", rowsDone: done, rowsTotal: total, partitionsDone: partitions, partitionsTotal: all, rowsPerSecond: 100)
    }

    func testTimeLeftComesFromTheEstimateUntilTheCopyPassesIt() {
        XCTAssertEqual(progress(done: 500, total: 1_000, partitions: 1, of: 4).secondsRemaining, 5)
        let past = progress(done: 1_500, total: 1_000, partitions: 3, of: 4)
        XCTAssertTrue(past.isPastEstimate)
        XCTAssertNil(past.secondsRemaining, "unknown, not 0")
        let finished = progress(done: 1_500, total: 1_000, partitions: 4, of: 4)
        XCTAssertTrue(finished.isFinished && !finished.isPastEstimate)
        XCTAssertEqual(finished.secondsRemaining, 0)
    }

    /// A filtered snapshot's total comes from the first plan line, in PostgreSQL's and Redshift's text forms.
    func testPlannedRowsAreReadFromEitherSourcesPlanLine() {
        XCTAssertEqual(RedshiftSnapshotSource.plannedRows(fromPlanLine: "Seq Scan on t  (cost=0.00..38.25 rows=753 width=4)"), 753)
        XCTAssertEqual(RedshiftSnapshotSource.plannedRows(fromPlanLine: "XN Seq Scan on orders  (cost=0.00..0.05 rows=5 width=0)"), 5)
        XCTAssertNil(RedshiftSnapshotSource.plannedRows(fromPlanLine: "Result"))
    }
}
