import Foundation
import Logging
import Spool

/// Everything one stream's parts share: its configuration, the state store, its spool directory and
/// dead-letter file, a logger carrying the stream name, and where progress goes.
public struct StreamContext: Sendable {
    public let config: ReplicationConfig
    public let stream: StreamConfig
    public let state: StateStore
    public let spool: SpoolDirectory
    public let deadLetters: DeadLetterFile
    public let logger: Logger
    public let progress: ProgressReporter?
    public let metrics: StreamMetrics

    public init(config: ReplicationConfig, stream: StreamConfig, state: StateStore, logger: Logger, progress: ProgressReporter?) throws {
        self.config = config
        self.stream = stream
        self.state = state
        spool = try SpoolDirectory(root: (config.stateDirectory as NSString).appendingPathComponent("spool"), stream: stream.name)
        deadLetters = try DeadLetterFile(stateDirectory: config.stateDirectory, stream: stream.name)
        var logger = logger
        logger[metadataKey: "stream"] = "\(stream.name)"
        self.logger = logger
        self.progress = progress
        self.metrics = StreamMetrics(stream: stream.name)
    }

    /// Records a durable segment (and the extract position it carries), and counts it.
    func recordSegment(_ segment: SegmentRecord) async throws {
        try await state.recordSegment(segment)
        metrics.rowsExtracted.increment(by: Int64(segment.records))
        await updateSpoolGauge()
    }

    func updateSpoolGauge() async {
        if let backlog = try? await state.spoolBacklog(stream.name) { metrics.spoolBytes.record(backlog.bytes) }
    }

    public var name: String { stream.name }

    /// Writes dead letters to the file and counts them in the state store.
    func deadLetter(_ entries: [DeadLetterFile.Entry]) async throws {
        guard !entries.isEmpty else { return }
        try deadLetters.append(stream: stream.name, entries)
        try await state.addDeadLetters(stream.name, count: entries.count)
        metrics.rowsDeadLettered.increment(by: Int64(entries.count))
        for entry in entries.prefix(3) {
            logger.warning("dead-lettered a row", metadata: ["key": "\(entry.key)", "reason": "\(entry.reason)"])
        }
    }

    /// Start-up recovery: remove spool files the state store does not know (written but never recorded).
    func recoverSpool() async throws {
        let known = try await state.knownSequences(stream.name)
        let removed = spool.removeUnknown(known: known)
        if removed > 0 { logger.info("removed unrecorded spool files left by an interrupted run", metadata: ["files": "\(removed)"]) }
    }

    /// Waits while the spool holds more than `spoolMaxBytes` (the applier is behind or the target is down).
    func waitForSpoolSpace() async throws {
        var warned = false
        while try await state.spoolBacklog(stream.name).bytes > stream.spoolMaxBytes {
            if !warned {
                logger.warning("spool full: pausing extraction until the applier catches up", metadata: ["spool_max_bytes": "\(stream.spoolMaxBytes)"])
                warned = true
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}

/// Snapshot progress for one stream.
public struct SnapshotProgress: Sendable {
    public var stream: String
    public var rowsDone: Int
    public var rowsTotal: Int
    public var partitionsDone: Int
    public var partitionsTotal: Int
    public var rowsPerSecond: Double
    public var secondsRemaining: Double? {
        guard rowsPerSecond > 0, rowsTotal > rowsDone else { return rowsTotal <= rowsDone ? 0 : nil }
        return Double(rowsTotal - rowsDone) / rowsPerSecond
    }
}

/// Receives progress of long work; the executable draws it on a terminal or logs it.
public protocol ProgressReporter: Sendable {
    func update(_ progress: SnapshotProgress)
    func finish(stream: String)
}
