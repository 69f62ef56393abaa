/// The `leases` table: which worker runs which stream, under which fencing epoch, until when.
struct LeaseTable {
    let db: StateDatabase
    let worker: String

    /// Takes `stream` if it is free, expired (before `staleBefore`), or already this worker's. Every acquisition
    /// raises the epoch. Returns the lease and the previous holder, or nil when another worker holds it.
    func acquire(_ stream: String, expires: Double, staleBefore: Double) throws -> (Lease, previousHolder: String?)? {
        let previous = try db.query("SELECT holder FROM leases WHERE stream = ?", [.text(stream)]).first?.first?.text
        guard let epoch = try db.query("""
            INSERT INTO leases (stream, holder, epoch, expires_at, heartbeat_at) VALUES (?, ?, 1, ?, ?)
            ON CONFLICT (stream) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1,
                expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at
            WHERE leases.holder = excluded.holder OR leases.expires_at < ?
            RETURNING epoch
            """, [.text(stream), .text(worker), .real(expires), .real(StateCodec.now), .real(staleBefore)]).first?.first?.int
        else { return nil }
        return (Lease(stream: stream, holder: worker, epoch: epoch, expiresAt: expires), previous)
    }

    /// Extends the lease; false when it was lost (a newer epoch exists).
    func renew(_ lease: Lease, expires: Double) throws -> Bool {
        !(try db.query("UPDATE leases SET expires_at = ?, heartbeat_at = ? WHERE stream = ? AND holder = ? AND epoch = ? RETURNING epoch",
                       [.real(expires), .real(StateCodec.now), .text(lease.stream), .text(lease.holder), .integer(lease.epoch)]).isEmpty)
    }

    func release(_ lease: Lease) throws {
        try db.query("UPDATE leases SET expires_at = 0 WHERE stream = ? AND holder = ? AND epoch = ?",
                     [.text(lease.stream), .text(lease.holder), .integer(lease.epoch)])
    }

    /// True while `epoch` is the stream's current lease and has not expired (before `notExpiredAt`).
    func holds(_ stream: String, epoch: Int64, notExpiredAt: Double) throws -> Bool {
        !(try db.query("SELECT 1 FROM leases WHERE stream = ? AND holder = ? AND epoch = ? AND expires_at >= ?",
                       [.text(stream), .text(worker), .integer(epoch), .real(notExpiredAt)]).isEmpty)
    }

    /// The fence of a position write, inside its transaction: the lease row is locked (so a takeover waits for
    /// this transaction) and must still carry this epoch.
    func check(_ lease: Lease) throws {
        let current = try db.query("SELECT holder, epoch FROM leases WHERE stream = ?\(db.dialect.forUpdate)", [.text(lease.stream)]).first
        guard let current, current[0].text == lease.holder, current[1].int == lease.epoch else {
            let holder = current?[0].text ?? "nobody"
            throw StateStoreError(.fenced, "stream \(lease.stream): lease epoch \(lease.epoch) is no longer this worker's (held by \(holder), epoch \(current?[1].int ?? 0))")
        }
    }

    func all() throws -> [Lease] {
        try db.query("SELECT stream, holder, epoch, expires_at FROM leases ORDER BY stream").map {
            Lease(stream: $0[0].text ?? "", holder: $0[1].text ?? "", epoch: $0[2].int ?? 0, expiresAt: $0[3].real ?? 0)
        }
    }
}
