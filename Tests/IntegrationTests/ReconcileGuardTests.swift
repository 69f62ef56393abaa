import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `max_delete_ratio`: a reconcile that finds too much of the target missing at the source deletes nothing, says
/// so once, and shows it in `lag` and `check`; once back under the ratio, deletes proceed (on the second
/// sighting) and the note clears.
final class ReconcileGuardTests: IntegrationTestCase {
    override var namePrefix: String { "guard" }

    func testMassDisappearanceIsRefusedThenSmallDeletesProceed() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 200)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    reconcile_every: 1s\n    max_delete_ratio: 10%")
        let (process, base) = try startRun(config)
        try await waitFor("snapshot") { self.phase("orders") == "streaming" }
        // An ETL reload in two transactions: the table is half empty for a while.
        try await connection.execute("CREATE TABLE public.\(table)_keep AS SELECT * FROM public.\(table) WHERE id > 100")
        onTeardown { [connection, table] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)_keep") }
        try await connection.execute("DELETE FROM public.\(table) WHERE id > 100")
        var lag: [String: Any] = [:]
        try await waitFor("the refusal to show in lag", timeout: 60) {
            let r = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
            lag = ((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["streams"] as? [[String: Any]])?.first ?? [:]
            return lag["reconcile_refused"] is String
        }
        let note = lag["reconcile_refused"] as? String ?? ""
        XCTAssertTrue(note.contains("100 of 200 documents") && note.contains("over max_delete_ratio (20 documents): nothing deleted"), note)
        try await Task.sleep(for: .seconds(3))  // more cycles: still nothing deleted
        let kept = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(kept, 200, "a refused cycle deletes nothing")
        let check = try MongoshiftProcess.run(["check", "--config", config, "--min-oplog-window", "0s"])
        XCTAssertEqual(check.status, 1)
        XCTAssertTrue(check.stdout.contains("orders: hard-delete reconcile refused:"), check.stdout)
        let refusals = MongoshiftProcess.output(base).stderr.components(separatedBy: "hard-delete reconcile refused").count - 1
        XCTAssertEqual(refusals, 1, "logged once, not every cycle")

        // The reload completes but for 5 rows really deleted: those go, on their second sighting; the note clears.
        try await connection.execute("INSERT INTO public.\(table) SELECT * FROM public.\(table)_keep WHERE id > 105")
        try await waitFor("the 5 really deleted rows to leave Mongo", timeout: 60) {
            try await self.mongo.count(database: self.database, collection: "orders") == 195
        }
        try await waitFor("the note to clear", timeout: 30) {
            let r = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
            return r.stdout.contains(#""reconcile_refused":null"#)
        }
        stop(process)
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertTrue(tally.isExact && reasons.isEmpty, "\(tally) \(reasons)")
    }
}
