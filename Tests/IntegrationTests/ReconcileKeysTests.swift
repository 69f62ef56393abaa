import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Hard-delete reconcile for keys that are not a single integer — text keys and composite keys — and `verify`
/// finding documents whose rows are gone for the same keys.
final class ReconcileKeysTests: IntegrationTestCase {
    override var namePrefix: String { "rkeys" }

    func run(table: String, key: String, deleting condition: String, expect remaining: Int) async throws {
        let config = try writeStreamsConfig("""
          - name: t
            from: { table: public.\(table) }
            to: { collection: t }
            key: [\(key)]
            watermark: updated_at
            safety_lag: 1s
            reconcile_every: 1s
        """)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        try await connection.execute("DELETE FROM public.\(table) WHERE \(condition)")
        let verify = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(verify.status, 1, verify.stdout)
        XCTAssertTrue(verify.stdout.contains("extra \(200 - remaining)"), "verify finds the documents whose rows are gone: \(verify.stdout)")
        let (process, _) = try startRun(config)
        try await waitFor("the reconciler to delete the documents of the deleted rows", timeout: 60) {
            try await self.mongo.count(database: self.database, collection: "t") == remaining
        }
        try await Task.sleep(for: .seconds(2))
        let after = try await mongo.count(database: database, collection: "t")
        XCTAssertEqual(after, remaining, "nothing else deleted")
        stop(process)
        XCTAssertEqual(try MongoshiftProcess.run(["verify", "--config", config]).status, 0)
    }

    func testTextKeys() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (code varchar(20) PRIMARY KEY, v int, updated_at timestamp NOT NULL DEFAULT now());
            INSERT INTO public.\(table) (code, v) SELECT 'c-' || lpad(g::text, 4, '0') || CASE WHEN g % 3 = 0 THEN 'É' ELSE '' END, g FROM generate_series(1, 200) g;
            """)
        try await run(table: table, key: "code", deleting: "v IN (3, 50, 199)", expect: 197)
    }

    /// The walk starts when the collection holds more documents than the source has keys: the source was counted
    /// by rows, NULL keys and duplicate keys (Redshift enforces none) included — rows without documents — so
    /// rows deleted while those existed were never found.
    func testNullAndDuplicateKeysDoNotHideDeletedRows() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (code varchar(20), v int, updated_at timestamp NOT NULL DEFAULT now());
            INSERT INTO public.\(table) (code, v) SELECT 'c-' || lpad(g::text, 4, '0'), g FROM generate_series(1, 200) g;
            INSERT INTO public.\(table) (code, v) VALUES (NULL, 1001), (NULL, 1002), (NULL, 1003), ('c-0100', 1004), ('c-0101', 1005), ('c-0102', 1006);
            """)
        let config = try writeStreamsConfig("""
          - name: t
            from: { table: public.\(table) }
            to: { collection: t }
            key: [code]
            watermark: updated_at
            safety_lag: 1s
            reconcile_every: 1s
        """)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let copied = try await mongo.count(database: database, collection: "t")
        XCTAssertEqual(copied, 200)
        try await connection.execute("DELETE FROM public.\(table) WHERE v IN (5, 6)")
        let (process, _) = try startRun(config)
        try await waitFor("the reconciler to delete the documents of the 2 deleted rows", timeout: 30) {
            try await self.mongo.count(database: self.database, collection: "t") == 198
        }
        stop(process)
    }

    func testCompositeKeys() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (region text NOT NULL, n int NOT NULL, v int, updated_at timestamp NOT NULL DEFAULT now(), PRIMARY KEY (region, n));
            INSERT INTO public.\(table) (region, n, v) SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, g FROM generate_series(1, 200) g;
            """)
        try await run(table: table, key: "region, n", deleting: "n IN (10, 11)", expect: 198)
    }

    /// Documents written while a key column was `integer` (`_id.n` an int32) are the same rows once it is `bigint`
    /// (the source decodes int64s): only the deleted rows are missing. Compared by value, all 200 were, and the
    /// delete guard's ratio refused every delete.
    func testCompositeKeysAfterTheKeyTypeWidened() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (region text NOT NULL, n int NOT NULL, v int, updated_at timestamp NOT NULL DEFAULT now(), PRIMARY KEY (region, n));
            INSERT INTO public.\(table) (region, n, v) SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, g FROM generate_series(1, 200) g;
            """)
        let config = try writeStreamsConfig("""
          - name: t
            from: { table: public.\(table) }
            to: { collection: t }
            key: [region, n]
            watermark: updated_at
            safety_lag: 1s
            reconcile_every: 1s
        """)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        try await connection.execute("ALTER TABLE public.\(table) ALTER COLUMN n TYPE bigint; DELETE FROM public.\(table) WHERE n IN (10, 11)")
        let (process, _) = try startRun(config)
        try await waitFor("the reconciler to delete the documents of the deleted rows", timeout: 60) {
            try await self.mongo.count(database: self.database, collection: "t") == 198
        }
        try await Task.sleep(for: .seconds(2))
        let after = try await mongo.count(database: database, collection: "t")
        XCTAssertEqual(after, 198, "nothing else deleted")
        stop(process)
    }
}
