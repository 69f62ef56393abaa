/// How a snapshot run ended (both directions).
public enum SnapshotOutcome: Sendable, Equatable {
    /// Nothing to do: the stream finished its snapshot earlier.
    case alreadyComplete(rowsApplied: Int)
    case completed(rowsCopied: Int)
    /// `--spool-only`: every page is durable in the spool; apply later with `snapshot` or `run`.
    case spooled(segments: Int)
    /// Graceful shutdown arrived: progress is persisted and the next run resumes.
    case interrupted
}
