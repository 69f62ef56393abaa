import Changes
import Foundation
import Logging
import ShiftCore
import Spool
import StateStore

/// Everything one stream's parts share: its configuration, the state store, its spool directory and
/// dead-letter file, a logger carrying the stream name, where progress goes, and the lease it runs under.
public struct StreamContext: Sendable {
    public let config: ReplicationConfig
    public let stream: StreamConfig
    public let state: StateStore
    public let spool: SpoolDirectory
    public let deadLetters: DeadLetterFile
    public let logger: Logger
    public let progress: ProgressReporter?
    public let metrics: StreamMetrics
    /// Owner: runs the whole stream under its lease. Helper: only copies snapshot partitions of a stream another
    /// worker owns.
    public var role: StreamRole = .owner
    /// The lease this worker runs the stream under. Every write that moves the stream's positions carries it.
    public var lease: Lease?

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

    public var name: String { stream.name }

    /// The lease, which tail extraction and tail applies require (the `run` daemon always holds one).
    func requireLease() throws -> Lease {
        guard let lease else { throw ReplicationError(.internal, stream: name, "the stream's lease is required to tail it") }
        return lease
    }

    /// Makes a tail (or lookback repair) segment durable and records it under the lease and the extractor's
    /// generation: a rewind or a takeover since the extractor started refuses it (and its file is removed).
    @discardableResult
    func spoolTail(_ writer: SpoolSegmentWriter, kind: SegmentRecord.Kind = .tail, first: StreamPosition?, last: StreamPosition?,
                   generation: Int64) async throws -> SegmentRecord {
        let lease = try requireLease()
        return try await spool(writer, kind: kind, partition: -1, first: first, last: last) { segment in
            try await state.recordTailSegment(segment, lease: lease, generation: generation)
        }
    }

    /// Makes a snapshot page durable and records it against this worker's claim on the partition.
    @discardableResult
    func spoolPage(_ writer: SpoolSegmentWriter, partition: Int, first: SnapshotKey?, last: SnapshotKey?) async throws -> SegmentRecord {
        try await spool(writer, kind: .snapshot, partition: partition, first: first.map(StreamPosition.snapshotKey),
                        last: last.map(StreamPosition.snapshotKey)) { segment in
            try await state.recordSnapshotPage(segment)
        }
    }

    /// Seals `writer` into a durable segment file, then records it, in that order: a crash between the two leaves
    /// an unknown file that the next start removes; a refused record removes it at once.
    ///
    /// A full disk is back-pressure, not failure: the error is logged once, extraction waits (the applier keeps
    /// draining and deleting segments) and the write is retried until space returns. The failed write left no
    /// file behind, so the spool never holds a torn segment.
    private func spool(_ writer: SpoolSegmentWriter, kind: SegmentRecord.Kind, partition: Int, first: StreamPosition?,
                       last: StreamPosition?, record: (SegmentRecord) async throws -> Void) async throws -> SegmentRecord {
        let seq = try await state.allocateSequence(name)
        var waitingSince: ContinuousClock.Instant?
        var bytes = 0
        while true {
            do {
                bytes = try await spool.seal(writer, seq: seq, first: first, last: last)
                break
            } catch let error as SpoolError where error.code == .noSpace {
                if waitingSince == nil {
                    waitingSince = .now
                    metrics.errors.increment()
                    logger.error("spool disk full: extraction paused until space returns (the applier keeps draining)",
                                 metadata: ["segment": "\(spool.segmentPath(seq))", "error": "\(error.reason)"])
                }
                if Task.isShuttingDownGracefully { throw CancellationError() }
                try await Task.sleep(for: .seconds(1))
            }
        }
        if let waitingSince {
            logger.notice("spool has space again: extraction resumed", metadata: ["paused_s": "\(Int((ContinuousClock.now - waitingSince).seconds))"])
        }
        CrashPoint.hit(CrashPoint.segmentSealed)
        if kind == .tail { CrashPoint.hit(CrashPoint.tailSealed) }
        let segment = SegmentRecord(stream: name, seq: seq, kind: kind, partition: partition, records: writer.count, bytes: bytes,
                                    firstPosition: first, lastPosition: last)
        do {
            try await record(segment)
        } catch {
            await spool.remove(seq)
            throw error
        }
        CrashPoint.hit(CrashPoint.segmentRecorded)
        metrics.rowsExtracted.increment(by: Int64(segment.records))
        await updateSpoolGauge()
        return segment
    }

    func updateSpoolGauge() async {
        if let backlog = try? await state.spoolBacklog(stream.name) { metrics.spoolBytes.record(backlog.bytes) }
    }

    /// After a snapshot round (claim and copy until nothing is claimable): true when this worker is done — shutdown,
    /// staging only, a helper, or every partition done and every page applied by whichever worker; otherwise
    /// (other workers still copying) waits a second before the next round.
    func snapshotRoundsOver(spoolOnly: Bool) async throws -> Bool {
        if Task.isShuttingDownGracefully || spoolOnly || role == .helper { return true }
        let remaining = try await state.snapshotRemaining(name)
        if remaining.partitions == 0 && remaining.segments == 0 { return true }
        try await pause(.seconds(1))
        return false
    }

    /// Fencing: a worker whose lease was lost (expired, taken over) must not apply. Throws `.fenced` then.
    func assertLease() async throws {
        guard let lease else { return }
        guard try await state.holdsLease(name, epoch: lease.epoch) else {
            throw ReplicationError(.fenced, stream: name, "lease epoch \(lease.epoch) is no longer this worker's: not applying")
        }
    }

    /// The stream's row in a target's checkpoint table: the stream name qualified by the state store's identity
    /// (two deployments, or a state directory started afresh, never share a fence).
    public var checkpointKey: String { String("\(stream.name)@\(state.instanceID)".prefix(127)) }

    /// Writes dead letters to the file and counts them in the state store.
    func deadLetter(_ entries: [DeadLetterFile.Entry]) async throws {
        guard !entries.isEmpty else { return }
        try await deadLetters.append(stream: stream.name, entries)
        try await state.addDeadLetters(stream.name, count: entries.count)
        metrics.rowsDeadLettered.increment(by: Int64(entries.count))
        for entry in entries.prefix(3) {
            logger.warning("dead-lettered a row", metadata: ["key": "\(entry.key)", "reason": "\(entry.reason)"])
        }
    }

    /// Start-up recovery: remove spool files the state store does not know (written but never recorded).
    func recoverSpool() async throws {
        let known = try await state.knownSequences(stream.name)
        let removed = await spool.removeUnknown(known: known)
        if removed > 0 { logger.info("removed unrecorded spool files left by an interrupted run", metadata: ["files": "\(removed)"]) }
    }

    /// Waits while the spool holds more than `spoolMaxBytes` (the applier is behind or the target is down).
    ///
    /// Also while the disk keeps less than two pages free and the spool holds segments to apply: the applier needs
    /// room of its own (COPY staging files, the state database) to drain them, so extraction stops before a full
    /// disk could stop the applier.
    func waitForSpoolSpace() async throws {
        var warned = false
        let floor = Int64(stream.pageBytes) * 2
        while true {
            let backlog = try await state.spoolBacklog(stream.name).bytes
            let free = DiskSpace.available(at: spool.path) ?? .max
            // (With nothing of this stream's to drain, pausing would wait for good: a write then meets ENOSPC.)
            guard backlog > stream.spoolMaxBytes || (free < floor && backlog > 0) else {
                if warned { logger.notice("spool has room again: extraction resumed") }
                return
            }
            if !warned {
                if backlog > stream.spoolMaxBytes {
                    logger.warning("spool full: pausing extraction until the applier catches up", metadata: ["spool_max_bytes": "\(stream.spoolMaxBytes)"])
                } else {
                    logger.warning("spool disk nearly full: pausing extraction until the applier frees space",
                                   metadata: ["free_bytes": "\(free)", "needed_bytes": "\(floor)", "path": "\(spool.path)"])
                }
                warned = true
            }
            // Shutdown stops the applier too: nothing would make room. Returns then (throwing would cancel the
            // applier's batch in the same task group); the extractor sees the shutdown and stops.
            try await pause(.milliseconds(250))
            if Task.isShuttingDownGracefully { return }
        }
    }
}

public enum StreamRole: Sendable { case owner, helper }
