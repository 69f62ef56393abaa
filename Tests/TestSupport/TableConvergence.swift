import Foundation
import MongoClient
import PostgresClient
import Replication

/// Waits until a Mongo collection and its Redshift/PostgreSQL table are equal (the product's comparison).
public enum TableConvergence {
    public static func wait(timeout: TimeInterval, mongo: MongoClient, database: String, collection: String, pg: PostgresConnection,
                            table: String, excluding: Set<String> = []) async throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var diffs: [String] = []
        repeat {
            if let r = try? await TableComparison.compare(mongo: mongo, database: database, collection: collection, pg: pg,
                                                          table: table, excluding: excluding) {
                diffs = r.reasons
                if r.differences == 0 && r.reasons.isEmpty { return [] }
            } else {
                diffs = ["table not readable yet"]
            }
            try await Task.sleep(for: .milliseconds(500))
        } while Date() < deadline
        return diffs
    }
}
