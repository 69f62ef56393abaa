/// The state store's schema, versioned in `meta.schema_version`; each step runs once, in a transaction.
enum StateMigrations {
    static let current = 4

    static func migrate(_ db: StateDatabase) throws {
        let d = db.dialect
        try db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        let version = try db.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.first?.text.flatMap { Int($0) } ?? 0
        if version > current {
            throw StateStoreError(.schemaTooNew, "state database schema \(version) is newer than this mongoshift (\(current))")
        }
        if version < 1 {
            try db.transaction {
                try db.execute("""
                CREATE TABLE streams (
                    name TEXT PRIMARY KEY, direction TEXT NOT NULL, phase TEXT NOT NULL,
                    snapshot_start \(d.blob), extract_position \(d.blob), applied_position \(d.blob),
                    rows_extracted \(d.integer) NOT NULL DEFAULT 0, rows_applied \(d.integer) NOT NULL DEFAULT 0,
                    rows_deadlettered \(d.integer) NOT NULL DEFAULT 0, stale_skipped \(d.integer) NOT NULL DEFAULT 0,
                    last_error TEXT, last_error_at \(d.real), updated_at \(d.real) NOT NULL, snapshot_completed_at \(d.real),
                    next_seq \(d.integer) NOT NULL DEFAULT 1);
                CREATE TABLE partitions (
                    stream TEXT NOT NULL, idx \(d.integer) NOT NULL, lower \(d.blob), upper \(d.blob), last_key \(d.blob),
                    status TEXT NOT NULL, rows \(d.integer) NOT NULL DEFAULT 0, PRIMARY KEY (stream, idx));
                CREATE TABLE segments (
                    stream TEXT NOT NULL, seq \(d.integer) NOT NULL, kind TEXT NOT NULL, partition \(d.integer) NOT NULL,
                    records \(d.integer) NOT NULL, bytes \(d.integer) NOT NULL, first_pos \(d.blob) NOT NULL, last_pos \(d.blob) NOT NULL,
                    created_at \(d.real) NOT NULL, PRIMARY KEY (stream, seq));
                CREATE TABLE columns (
                    stream TEXT NOT NULL, name TEXT NOT NULL, source_path TEXT NOT NULL, type TEXT NOT NULL,
                    width \(d.integer) NOT NULL DEFAULT 0, position \(d.integer) NOT NULL, PRIMARY KEY (stream, name));
                INSERT INTO meta VALUES ('schema_version', '1') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
        if version < 2 {
            // Several workers: segments belong to the worker whose spool holds them, partitions are claimed,
            // streams are leased (holder, fencing epoch, expiry).
            try db.transaction {
                try db.execute("""
                ALTER TABLE segments ADD COLUMN worker TEXT NOT NULL DEFAULT '';
                ALTER TABLE partitions ADD COLUMN claimed_by TEXT;
                ALTER TABLE partitions ADD COLUMN claim_expires \(d.real);
                CREATE TABLE leases (
                    stream TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch \(d.integer) NOT NULL,
                    expires_at \(d.real) NOT NULL, heartbeat_at \(d.real) NOT NULL);
                INSERT INTO meta VALUES ('schema_version', '2') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
        if version < 3 {
            // The stream lifecycle remembers where a failed stream stood; extractors record under a generation
            // that every rewind raises.
            try db.transaction {
                try db.execute("""
                ALTER TABLE streams ADD COLUMN failed_from TEXT;
                ALTER TABLE streams ADD COLUMN extract_generation \(d.integer) NOT NULL DEFAULT 0;
                UPDATE streams SET failed_from = CASE WHEN snapshot_completed_at IS NOT NULL THEN 'streaming' ELSE 'snapshotting' END
                    WHERE phase = 'failed';
                INSERT INTO meta VALUES ('schema_version', '3') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
        if version < 4 {
            // Each snapshot is a generation: the rows it writes carry it, and its completion removes older ones.
            try db.transaction {
                try db.execute("""
                ALTER TABLE streams ADD COLUMN snapshot_generation \(d.integer) NOT NULL DEFAULT 0;
                INSERT INTO meta VALUES ('schema_version', '4') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
    }
}
