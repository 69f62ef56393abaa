import BSON

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

    /// The events ready now, up to `maxEvents` or about `maxBytes`, collecting for at most `maxWait` once one has
    /// arrived; with none ready, waits up to the stream's maxAwaitTimeMS and returns none. The resume token is
    /// the one to persist once these events are applied.
    public func nextBatch(maxEvents: Int = 1000, maxBytes: Int = 16 << 20, maxWait: Duration = .seconds(1)) async throws -> ChangeBatch {
        try await owner.nextBatch(stream, maxEvents: maxEvents, maxBytes: maxBytes, maxWait: maxWait)
    }
}
