import Foundation
import Synchronization

/// Named instants where the reliability tests make the process die on the spot, exactly as `kill -9` would
/// (no flush, no cleanup), to prove a crash there loses nothing. Armed only by the environment variable
/// `MONGOSHIFT_CRASH_AT=name[:n]` (die at the n-th time `name` is reached, default 1); unset, a hit costs one
/// load of a lazily initialised constant.
public enum CrashPoint {
    /// After a segment's file is durable and before the state store records it.
    public static let segmentSealed = "spool.sealed"
    /// After the state store recorded a segment (the extract position moved), before anything applies it.
    public static let segmentRecorded = "spool.recorded"
    /// After the target accepted a segment's changes and before the applied position is persisted.
    public static let targetWritten = "apply.written"
    /// After the applied position is persisted and before the segment file is deleted.
    public static let checkpointWritten = "apply.checkpointed"
    /// Between a spool temp file's fsync and its rename.
    public static let spoolBeforeRename = "spool.before-rename"
    /// After a tail segment's file is durable and before the state store records it (stop point only).
    public static let tailSealed = "tail.sealed"

    /// COPY loads: after a batch's files are in S3, before the transaction.
    public static let loadUploaded = "load.uploaded"
    /// COPY loads: after COPY filled the stage table, before the transaction commits.
    public static let loadCopied = "load.copied"
    /// COPY loads: after the transaction committed, before its files are deleted.
    public static let loadCommitted = "load.committed"
    /// UNLOAD snapshots: after a file's rows are spooled (the partition's position moved), before the file is deleted.
    public static let unloadFileSpooled = "unload.file-spooled"
    /// UNLOAD snapshots: after a partition's last file is spooled, before the partition is marked done.
    public static let unloadPartitionCopied = "unload.partition-copied"

    public static let all = [segmentSealed, segmentRecorded, targetWritten, checkpointWritten, spoolBeforeRename]
    /// The S3 paths' own points (reached only with `load: copy` / `extract: unload`).
    public static let s3 = [loadUploaded, loadCopied, loadCommitted, unloadFileSpooled, unloadPartitionCopied]

    private static let armed: (name: String, at: Int)? = parse(ProcessInfo.processInfo.environment["MONGOSHIFT_CRASH_AT"])
    private static let hits = Atomic<Int>(0)
    /// `MONGOSHIFT_STOP_AT=name[:n]`: the process stops itself (SIGSTOP) there instead, as a frozen VM or a long
    /// pause would stop it — whole, heartbeats included — until the test sends SIGCONT.
    private static let stopArmed: (name: String, at: Int)? = parse(ProcessInfo.processInfo.environment["MONGOSHIFT_STOP_AT"])
    private static let stopHits = Atomic<Int>(0)

    static func parse(_ value: String?) -> (name: String, at: Int)? {
        guard let value, !value.isEmpty else { return nil }
        let parts = value.split(separator: ":", maxSplits: 1)
        let at = parts.count == 2 ? max(1, Int(parts[1]) ?? 1) : 1
        return (String(parts[0]), at)
    }

    /// Dies with SIGKILL if this is the armed point and its turn has come.
    @inline(__always)
    public static func hit(_ name: String) {
        if let stopArmed, stopArmed.name == name, stopHits.add(1, ordering: .relaxed).newValue == stopArmed.at {
            FileHandle.standardError.write(Data("mongoshift: stop point \(name) reached: SIGSTOP\n".utf8))
            kill(getpid(), SIGSTOP)
        }
        guard let armed, armed.name == name else { return }
        if hits.add(1, ordering: .relaxed).newValue >= armed.at {
            FileHandle.standardError.write(Data("mongoshift: crash point \(name) reached: SIGKILL\n".utf8))
            kill(getpid(), SIGKILL)
        }
    }
}
