import StateStore
import Changes
import Foundation
import Logging
import PostgresClient
import Replication
import Spool
import TestSupport
import XCTest

/// A batch whose schema change failed on the target is retried with its schema change: the applier adopts a
/// batch's learned columns only once the batch is in the target.
final class SchemaChangeRetryTests: XCTestCase {
    func testFailedColumnAddIsSentAgainOnRetry() async throws {
        let pg = try TestServers.requirePostgres()
        let connection = try await PostgresConnection.connect(pg)
        let schema = TestServers.uniqueName("ddlretry")
        let directory = try TestServers.temporaryDirectory("ddlretry")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = ReplicationConfig()
        config.stateDirectory = directory
        var stream = StreamConfig(name: "apps", direction: .mongoToRedshift, table: TableName(schema: schema, name: "apps"),
                                  collection: "apps", defaults: config.defaults)
        stream.flatten = 1
        config.streams = [stream]
        let state = try StateStore(directory: directory)
        _ = try await state.ensureStream("apps", direction: "mongo_to_redshift")
        let context = try StreamContext(config: config, stream: stream, state: state, logger: Logger(label: "test"), progress: nil)
        let applier = try await RedshiftApplier(context: context, endpoint: RedshiftEndpoint(url: pg, dialect: .postgres), policy: RetryPolicy(maxAttempts: 1))
        func segment(_ seq: Int64) -> SegmentRecord {
            SegmentRecord(stream: "apps", seq: seq, kind: .tail, partition: -1, records: 1, bytes: 0, firstPosition: nil,
                          lastPosition: .changeStream(ChangeStreamPosition(resumeToken: ["_data": .string("x\(seq)")])))
        }
        let first = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "n": 1])], segment: segment(1))
        XCTAssertEqual(first.applied, 1)

        // The target refuses this table's next ALTER TABLE once (an event trigger standing for a failed DDL statement).
        let trigger = "refuse_\(schema)"
        try await connection.execute("CREATE TABLE \(schema).refuse_ddl (x int)")
        try await connection.execute("INSERT INTO \(schema).refuse_ddl VALUES (1)")
        try await connection.execute("""
            CREATE FUNCTION \(schema).refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF current_query() LIKE '%\(schema)%apps%' AND EXISTS (SELECT 1 FROM \(schema).refuse_ddl) THEN
                DELETE FROM \(schema).refuse_ddl;
                RAISE EXCEPTION 'refused once';
              END IF;
            END $$
            """)
        try await connection.execute("CREATE EVENT TRIGGER \(trigger) ON ddl_command_start WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION \(schema).refuse_ddl()")
        defer { Task { _ = try? await connection.execute("DROP EVENT TRIGGER IF EXISTS \(trigger)") } }

        let widened = [Change(operation: .upsert, key: 2, document: ["_id": 2, "n": 2, "added": "yes"])]
        do {
            _ = try await applier.apply(widened, segment: segment(2))
            XCTFail("the refused ALTER TABLE should have failed the batch")
        } catch {}
        // (The trigger's DELETE was rolled back with its statement: let the retry through.)
        try await connection.execute("DELETE FROM \(schema).refuse_ddl")
        let retried = try await applier.apply(widened, segment: segment(2))
        XCTAssertEqual(retried.applied, 1)
        let added = try await connection.query("SELECT added FROM \(schema).apps WHERE _id = 2").rows.first?.first ?? nil
        XCTAssertEqual(added, "yes")
        try await connection.execute("DROP EVENT TRIGGER IF EXISTS \(trigger)")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }
}
