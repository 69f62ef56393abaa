import Changes

/// The `segments` table: which spool segments exist (per worker: a segment lives in its worker's spool), with
/// their kind, size and positions. A segment is recorded only once its file is durable and forgotten only once
/// its changes are applied (docs/ARCHITECTURE.md, "Spool").
struct SegmentLedger {
    let db: StateDatabase
    let worker: String

    func insert(_ segment: SegmentRecord) throws {
        try db.query("""
            INSERT INTO segments (stream, seq, kind, partition, records, bytes, first_pos, last_pos, created_at, worker)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(segment.stream), .integer(segment.seq), .text(segment.kind.rawValue), .integer(Int64(segment.partition)),
                  .integer(Int64(segment.records)), .integer(Int64(segment.bytes)),
                  .blob(StreamPosition.encode(segment.firstPosition).bytes), .blob(StreamPosition.encode(segment.lastPosition).bytes),
                  .real(StateCodec.now), .text(worker)])
    }

    /// Forgets one of this worker's segments; false when it was not (or no longer) recorded.
    @discardableResult
    func delete(_ segment: SegmentRecord) throws -> Bool {
        !(try db.query("DELETE FROM segments WHERE stream = ? AND seq = ? AND worker = ? RETURNING seq",
                       [.text(segment.stream), .integer(segment.seq), .text(worker)]).isEmpty)
    }

    func pending(_ stream: String) throws -> [SegmentRecord] {
        try db.query("""
            SELECT stream, seq, kind, partition, records, bytes, first_pos, last_pos FROM segments
            WHERE stream = ? AND worker = ? ORDER BY seq
            """, [.text(stream), .text(worker)]).map(Self.segment)
    }

    func known(_ stream: String) throws -> Set<Int64> {
        Set(try db.query("SELECT seq FROM segments WHERE stream = ? AND worker = ?", [.text(stream), .text(worker)]).compactMap { $0[0].int })
    }

    func backlog(_ stream: String) throws -> SpoolBacklog {
        let r = try db.query("SELECT count(*), coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM segments WHERE stream = ? AND worker = ?",
                             [.text(stream), .text(worker)]).first
        return SpoolBacklog(segments: Int(r?[0].int ?? 0), rows: Int(r?[1].int ?? 0), bytes: Int(r?[2].int ?? 0))
    }

    /// Tail segments after `seq`: they overlap a range about to be re-read.
    func deleteTail(_ stream: String, after seq: Int64) throws {
        try db.query("DELETE FROM segments WHERE stream = ? AND kind <> 'snapshot' AND seq > ? AND worker = ?",
                     [.text(stream), .integer(seq), .text(worker)])
    }

    /// Another worker's tail and repair segments (in its spool, gone with it) at a takeover.
    func forgetOtherWorkersTail(_ stream: String) throws {
        try db.query("DELETE FROM segments WHERE stream = ? AND worker <> ? AND kind <> 'snapshot'", [.text(stream), .text(worker)])
    }

    /// The partitions with snapshot pages pending in other workers' spools.
    func otherWorkersPagePartitions(_ stream: String) throws -> [Int] {
        try db.query("SELECT DISTINCT partition FROM segments WHERE stream = ? AND kind = 'snapshot' AND worker <> ? ORDER BY partition",
                     [.text(stream), .text(worker)]).compactMap { $0[0].int.map(Int.init) }
    }

    /// Another worker's pages of a partition this worker now copies again.
    func forgetOtherWorkersPages(_ stream: String, partition: Int) throws {
        try db.query("DELETE FROM segments WHERE stream = ? AND partition = ? AND kind = 'snapshot' AND worker <> ?",
                     [.text(stream), .integer(Int64(partition)), .text(worker)])
    }

    func deleteAll(_ stream: String) throws {
        try db.query("DELETE FROM segments WHERE stream = ?", [.text(stream)])
    }

    /// Snapshot pages not yet applied, over all workers.
    func snapshotPagesPending(_ stream: String) throws -> Int {
        Int(try db.query("SELECT count(*) FROM segments WHERE stream = ? AND kind = 'snapshot'", [.text(stream)]).first?.first?.int ?? 0)
    }

    static func segment(_ r: StateRow) throws -> SegmentRecord {
        func position(_ v: StateValue) throws -> StreamPosition? { try StateCodec.position(v) }
        return SegmentRecord(stream: r[0].text ?? "", seq: r[1].int ?? 0, kind: SegmentRecord.Kind(rawValue: r[2].text ?? "") ?? .tail,
                             partition: Int(r[3].int ?? -1), records: Int(r[4].int ?? 0), bytes: Int(r[5].int ?? 0),
                             firstPosition: try position(r[6]), lastPosition: try position(r[7]))
    }
}
