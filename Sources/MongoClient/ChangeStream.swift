/// One batch of change events and the resume token to persist once they are applied
/// (the server's postBatchResumeToken when the batch was drained, so idle streams keep advancing).
public struct ChangeBatch: Sendable {
    public var events: [Document]
    public var resumeToken: Document?
}

/// An open change stream. Blocking calls run on the owning client's thread.
///
/// `@unchecked Sendable`: `stream` is only touched on the owner's I/O thread, and `nextBatch` calls are awaited
/// one at a time by the single tailer that owns the stream.
public final class ChangeStream: @unchecked Sendable {
    private let owner: MongoClient
    private let stream: OpaquePointer

    init(owner: MongoClient, stream: OpaquePointer) {
        self.owner = owner
        self.stream = stream
    }

    deinit { owner.destroy(stream) }

    /// Up to `maxEvents` events; waits up to the stream's maxAwaitTimeMS when none are ready.
    public func nextBatch(maxEvents: Int = 1000) async throws -> ChangeBatch {
        try await owner.nextBatch(stream, maxEvents: maxEvents)
    }
}
