import Changes

/// The `partitions` table: a snapshot's key ranges, how far each was copied, and which worker copies it.
struct PartitionTable {
    let db: StateDatabase
    let worker: String

    func replace(_ stream: String, with partitions: [PartitionState]) throws {
        try db.query("DELETE FROM partitions WHERE stream = ?", [.text(stream)])
        for p in partitions {
            try db.query("INSERT INTO partitions (stream, idx, lower, upper, last_key, status, rows) VALUES (?, ?, ?, ?, NULL, 'pending', 0)",
                         [.text(stream), .integer(Int64(p.index)), StateCodec.blob(p.lower), StateCodec.blob(p.upper)])
        }
    }

    func all(_ stream: String) throws -> [PartitionState] {
        try db.query("SELECT idx, lower, upper, last_key, status, rows FROM partitions WHERE stream = ? ORDER BY idx", [.text(stream)])
            .map(Self.partition)
    }

    /// The next partition nobody copies: pending (resuming at its last page when this worker copied it before),
    /// or claimed by a worker whose claim expired (its pages are in its own spool: the partition starts over) —
    /// never one of `excluding`, the partitions this process's copiers are copying (a claim names the worker, not
    /// the copier). PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers never wait for each other.
    func claimNext(_ stream: String, expires: Double, excluding: Set<Int>) throws -> PartitionState? {
        let lock = db.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        let excluded = excluding.sorted()
        let notExcluded = excluded.isEmpty ? "" : " AND idx NOT IN (\(excluded.map { _ in "?" }.joined(separator: ", ")))"
        guard let r = try db.query("""
            UPDATE partitions SET status = 'claimed', claimed_by = ?, claim_expires = ?,
                last_key = CASE WHEN claimed_by IS NULL OR claimed_by = ? THEN last_key ELSE NULL END,
                rows = CASE WHEN claimed_by IS NULL OR claimed_by = ? THEN rows ELSE 0 END
            WHERE stream = ? AND idx = (SELECT idx FROM partitions WHERE stream = ? AND (status = 'pending'
                OR (status = 'claimed' AND claim_expires < ?))\(notExcluded) ORDER BY idx LIMIT 1\(lock))
            RETURNING idx, lower, upper, last_key, status, rows
            """, [.text(worker), .real(expires), .text(worker), .text(worker), .text(stream), .text(stream), .real(StateCodec.now)]
                + excluded.map { .integer(Int64($0)) }).first
        else { return nil }
        return try Self.partition(r)
    }

    /// Extends this worker's claims on partitions it is still copying (a copy can outlast one claim before its
    /// first page renews it: a whole UNLOAD runs first).
    func renewClaims(_ stream: String, partitions: Set<Int>, expires: Double) throws {
        guard !partitions.isEmpty else { return }
        let indices = partitions.sorted()
        try db.query("""
            UPDATE partitions SET claim_expires = ? WHERE stream = ? AND claimed_by = ? AND status = 'claimed'
                AND idx IN (\(indices.map { _ in "?" }.joined(separator: ", ")))
            """, [.real(expires), .text(stream), .text(worker)] + indices.map { .integer(Int64($0)) })
    }

    /// This worker's claims from an earlier run go back to pending, keeping their last page.
    func releaseClaims(_ stream: String) throws {
        try db.query("UPDATE partitions SET status = 'pending' WHERE stream = ? AND status = 'claimed' AND claimed_by = ?",
                     [.text(stream), .text(worker)])
    }

    /// A page of a partition this worker still claims, continuing exactly where the partition stood
    /// (compare-and-set on claimer and last key): the claim is renewed and the last key moved.
    func recordPage(_ stream: String, partition: Int, first: SnapshotKey?, last: SnapshotKey?, rows: Int, claimExpires: Double) throws {
        guard let r = try db.query("SELECT claimed_by, status, last_key, lower FROM partitions WHERE stream = ? AND idx = ?\(db.dialect.forUpdate)",
                                   [.text(stream), .integer(Int64(partition))]).first,
              r[0].text == worker, r[1].text == PartitionState.Status.claimed.rawValue
        else {
            throw StateStoreError(.fenced, "stream \(stream): partition \(partition) is no longer claimed by this worker")
        }
        let stored = try StateCodec.key(r[2]) ?? StateCodec.key(r[3])
        guard stored == first else {
            throw StateStoreError(.rewound, "stream \(stream): partition \(partition) stands at \(stored?.description ?? "its start"), not at this page's start \(first?.description ?? "its start")")
        }
        try db.query("UPDATE partitions SET last_key = ?, rows = rows + ?, claim_expires = ? WHERE stream = ? AND idx = ?",
                     [StateCodec.blob(last), .integer(Int64(rows)), .real(claimExpires), .text(stream), .integer(Int64(partition))])
    }

    func markDone(_ stream: String, partition: Int) throws {
        let done = try db.query("UPDATE partitions SET status = 'done' WHERE stream = ? AND idx = ? AND claimed_by = ? RETURNING idx",
                                [.text(stream), .integer(Int64(partition)), .text(worker)])
        if done.isEmpty {
            throw StateStoreError(.fenced, "stream \(stream): partition \(partition) is no longer claimed by this worker")
        }
    }

    /// Copies the partition again from its start (a discarded page): pending, its claim dropped. From the start,
    /// not from the page: with several pages discarded (or one discarded while the partition is being re-read),
    /// rewinding to a later page's start would skip an earlier page's range.
    func rewindToStart(_ stream: String, partition: Int) throws {
        try db.query("UPDATE partitions SET last_key = NULL, status = 'pending', claimed_by = NULL WHERE stream = ? AND idx = ?",
                     [.text(stream), .integer(Int64(partition))])
    }

    func notDone(_ stream: String) throws -> Int {
        Int(try db.query("SELECT count(*) FROM partitions WHERE stream = ? AND status <> 'done'", [.text(stream)]).first?.first?.int ?? 0)
    }

    func deleteAll(_ stream: String) throws {
        try db.query("DELETE FROM partitions WHERE stream = ?", [.text(stream)])
    }

    static func partition(_ r: StateRow) throws -> PartitionState {
        PartitionState(index: Int(r[0].int ?? 0), lower: try StateCodec.key(r[1]), upper: try StateCodec.key(r[2]),
                       lastKey: try StateCodec.key(r[3]), status: PartitionState.Status(rawValue: r[4].text ?? "") ?? .pending,
                       rows: Int(r[5].int ?? 0))
    }
}
