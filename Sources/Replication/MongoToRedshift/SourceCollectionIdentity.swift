import BSON
import MongoClient

/// Which collection a Mongo → Redshift stream reads, by its UUID (docs/ARCHITECTURE.md, "A collection replaced
/// under its name"). A rename onto the watched name (`renameCollection` with `dropTarget`, an aggregation's
/// `$out`) brings in a whole other collection, and MongoDB tells the watched name's change stream nothing of it:
/// only a new UUID shows it.
struct SourceCollectionIdentity: Sendable {
    let context: StreamContext
    let client: MongoClient
    let database: String

    /// The collection's UUID (hex) now; nil while there is no such collection, when the server gives none, or
    /// when the login may not list collections (`check` reports that: replacements then go unnoticed).
    func current() async throws -> String? {
        let reply: Document
        do {
            reply = try await client.command(["listCollections": 1, "filter": .document(["name": .string(context.stream.collection)])],
                                             database: database)
        } catch let error as MongoError where error.serverCode == 13 {
            return nil
        }
        guard case .array(let batch)? = reply.value(at: "cursor.firstBatch"), case .document(let entry)? = batch.first,
              case .binary(let uuid)? = entry.value(at: "info.uuid") else { return nil }
        return uuid.data.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// Records the UUID a new snapshot copies (the owner, once its start is captured).
    func recordForSnapshot() async throws {
        try await context.state.setNote(.sourceCollection, stream: context.name, try await current())
    }

    /// The recorded and the present UUID when they differ; nil when they agree or there is no collection now. With
    /// none recorded (a stream from before this check, or after a handled drop) the present one is adopted.
    func replacement() async throws -> (recorded: String, now: String)? {
        guard let now = try await current() else { return nil }
        guard let recorded = try await context.state.note(.sourceCollection, stream: context.name) else {
            try await context.state.setNote(.sourceCollection, stream: context.name, now)
            return nil
        }
        return recorded == now ? nil : (recorded, now)
    }

    /// Throws `.sourceReplaced` when the collection under the stream's name is not the one recorded.
    func verify() async throws {
        if let (recorded, now) = try await replacement() { throw replaced(recorded, now) }
    }

    func replaced(_ recorded: String, _ now: String) -> ReplicationError {
        ReplicationError(.sourceReplaced, stream: context.name,
                         "source collection \(database).\(context.stream.collection) was replaced under its name (UUID \(recorded) → \(now)) "
                         + "with no change event for it: a rename onto it (renameCollection with dropTarget, or an aggregation's $out)")
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
