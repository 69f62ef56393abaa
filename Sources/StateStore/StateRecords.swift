import Changes

/// One stream's row: where it stands, its positions and counters.
public struct StreamState: Sendable {
    public var name: String
    public var direction: String
    public var lifecycle: StreamLifecycle.State
    /// The source position captured when the snapshot began (Redshift: the source clock as a watermark; Mongo:
    /// the change stream's resume point).
    public var snapshotStart: StreamPosition?
    /// Newest source position written to the spool.
    public var extractPosition: StreamPosition?
    /// Newest source position applied to the target: where a new extractor starts.
    public var appliedPosition: StreamPosition?
    /// Raised whenever the extract position is moved back (spool recovery, takeover, reset): an extractor records
    /// segments only under the generation it started from, so a stale extractor can never write past a rewind.
    public var extractGeneration: Int64
    /// The current (or last) snapshot's generation: rows it writes carry it; its completion sweeps older ones.
    public var snapshotGeneration: Int64
    public var rowsExtracted: Int
    public var rowsApplied: Int
    public var rowsDeadLettered: Int
    public var staleSkipped: Int
    public var lastError: String?
    public var lastErrorAt: Double?
    public var updatedAt: Double
    public var snapshotCompletedAt: Double?

    public var phase: StreamLifecycle.Phase { lifecycle.phase }
}

/// Where an extractor starts: the position to read after, under the generation it must record with.
public struct ExtractCursor: Sendable, Equatable {
    public var position: StreamPosition?
    public var generation: Int64
}

public struct PartitionState: Sendable, Equatable {
    public enum Status: String, Sendable { case pending, claimed, done }
    public var index: Int
    /// Exclusive lower bound (nil: unbounded), inclusive upper bound (nil: unbounded).
    public var lower: SnapshotKey?
    public var upper: SnapshotKey?
    /// Last key durably spooled; reading resumes after it.
    public var lastKey: SnapshotKey?
    public var status: Status
    public var rows: Int

    public init(index: Int, lower: SnapshotKey?, upper: SnapshotKey?, lastKey: SnapshotKey? = nil, status: Status = .pending, rows: Int = 0) {
        self.index = index
        self.lower = lower
        self.upper = upper
        self.lastKey = lastKey
        self.status = status
        self.rows = rows
    }
}

public struct SegmentRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case snapshot, tail, repair }
    public var stream: String
    public var seq: Int64
    public var kind: Kind
    /// Snapshot partition the segment belongs to (-1 for tail and repair segments).
    public var partition: Int
    public var records: Int
    public var bytes: Int
    /// Position before the segment's first change (nil: the start) and after its last.
    public var firstPosition: StreamPosition?
    public var lastPosition: StreamPosition?

    public init(stream: String, seq: Int64, kind: Kind, partition: Int, records: Int, bytes: Int,
                firstPosition: StreamPosition?, lastPosition: StreamPosition?) {
        self.stream = stream
        self.seq = seq
        self.kind = kind
        self.partition = partition
        self.records = records
        self.bytes = bytes
        self.firstPosition = firstPosition
        self.lastPosition = lastPosition
    }
}

/// `stream`'s lease: who runs it, under which fencing epoch, until when (seconds since 1970). Writes that move
/// the stream's positions carry it and are refused once a newer epoch exists.
public struct Lease: Sendable, Equatable {
    public var stream: String
    public var holder: String
    public var epoch: Int64
    public var expiresAt: Double
}

/// The spool backlog of one stream on this worker.
public struct SpoolBacklog: Sendable, Equatable {
    public var segments = 0
    public var rows = 0
    public var bytes = 0
}

/// A target table column learned from documents (Mongo → Redshift).
public struct StoredColumn: Sendable, Equatable {
    public var name: String
    public var path: String
    public var type: String
    public init(name: String, path: String, type: String) {
        self.name = name
        self.path = path
        self.type = type
    }
}

/// Operator-facing notes a stream carries in the state store's `meta` table (no schema change): the last
/// `reset`, and a hard-delete reconcile that refused to delete.
public enum StreamNote: String, Sendable, CaseIterable {
    case lastReset = "reset"
    case reconcileRefused = "reconcile_refused"
    /// The columns a Redshift → Mongo stream's positions are values of (`watermark …; key …`).
    case positionColumns = "position_columns"

    func key(_ stream: String) -> String { rawValue + ":" + stream }
}

