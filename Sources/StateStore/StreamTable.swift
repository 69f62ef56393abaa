import Changes
import ShiftCore

/// The `streams` table: one row per stream — its lifecycle, positions, counters and last error.
struct StreamTable {
    let db: StateDatabase

    private static let columns = """
        name, direction, phase, failed_from, snapshot_start, extract_position, applied_position, extract_generation,
        rows_extracted, rows_applied, rows_deadlettered, stale_skipped, last_error, last_error_at, updated_at, snapshot_completed_at,
        snapshot_generation
        """

    func ensure(_ name: String, direction: String) throws -> StreamState {
        try db.query("INSERT INTO streams (name, direction, phase, updated_at) VALUES (?, ?, 'new', ?) ON CONFLICT DO NOTHING",
                     [.text(name), .text(direction), .real(StateCodec.now)])
        return try load(name)!
    }

    func load(_ name: String) throws -> StreamState? {
        guard let r = try db.query("SELECT \(Self.columns) FROM streams WHERE name = ?", [.text(name)]).first else { return nil }
        return StreamState(
            name: r[0].text ?? name, direction: r[1].text ?? "",
            lifecycle: StreamLifecycle(stored: r[2].text ?? "new", failedFrom: r[3].text).state,
            snapshotStart: try StateCodec.position(r[4]), extractPosition: try StateCodec.position(r[5]),
            appliedPosition: try StateCodec.position(r[6]), extractGeneration: r[7].int ?? 0, snapshotGeneration: r[16].int ?? 0,
            rowsExtracted: Int(r[8].int ?? 0), rowsApplied: Int(r[9].int ?? 0), rowsDeadLettered: Int(r[10].int ?? 0),
            staleSkipped: Int(r[11].int ?? 0), lastError: r[12].text, lastErrorAt: r[13].real, updatedAt: r[14].real ?? 0,
            snapshotCompletedAt: r[15].real)
    }

    func names() throws -> [String] {
        try db.query("SELECT name FROM streams ORDER BY name").compactMap { $0[0].text }
    }

    /// Applies a lifecycle event to the stored phase (read under a row lock, written in the same transaction).
    @discardableResult
    func transition(_ name: String, _ event: StreamLifecycle.Event) throws -> StreamLifecycle.State {
        guard let r = try db.query("SELECT phase, failed_from FROM streams WHERE name = ?\(db.dialect.forUpdate)", [.text(name)]).first else {
            throw StateStoreError(.illegalTransition, "stream \(name) is not in the state store")
        }
        var lifecycle = StreamLifecycle(stored: r[0].text ?? "new", failedFrom: r[1].text)
        do {
            try lifecycle.apply(event)
        } catch {
            throw StateStoreError(.illegalTransition, "stream \(name): \(error)")
        }
        try db.query("UPDATE streams SET phase = ?, failed_from = ?, updated_at = ? WHERE name = ?",
                     [.text(lifecycle.state.phase.rawValue), lifecycle.storedFailedFrom.map(StateValue.text) ?? .null,
                      .real(StateCodec.now), .text(name)])
        return lifecycle.state
    }

    /// A new snapshot's start: the captured source position, the tail's seed as both extract and applied position
    /// (a new extraction begins: the extract generation moves on), and the next snapshot generation — above the
    /// last one and at least `generationAtLeast`. Returns that generation.
    func startSnapshot(_ name: String, start: StreamPosition, tailSeed: StreamPosition?, generationAtLeast: Int64) throws -> Int64 {
        try db.query("""
            UPDATE streams SET snapshot_start = ?, extract_position = ?, applied_position = ?, snapshot_completed_at = NULL,
                extract_generation = extract_generation + 1,
                snapshot_generation = CASE WHEN snapshot_generation + 1 > ? THEN snapshot_generation + 1 ELSE ? END,
                updated_at = ? WHERE name = ? RETURNING snapshot_generation
            """, [StateCodec.blob(start), StateCodec.blob(tailSeed), StateCodec.blob(tailSeed), .integer(generationAtLeast),
                  .integer(generationAtLeast), .real(StateCodec.now), .text(name)]).first?.first?.int ?? generationAtLeast
    }

    func snapshotGeneration(_ name: String) throws -> Int64 {
        try db.query("SELECT snapshot_generation FROM streams WHERE name = ?", [.text(name)]).first?.first?.int ?? 0
    }

    func markSnapshotComplete(_ name: String) throws {
        try db.query("UPDATE streams SET snapshot_completed_at = ?, updated_at = ? WHERE name = ?",
                     [.real(StateCodec.now), .real(StateCodec.now), .text(name)])
    }

    func cursor(_ name: String) throws -> ExtractCursor {
        guard let r = try db.query("SELECT extract_position, extract_generation FROM streams WHERE name = ?", [.text(name)]).first else {
            return ExtractCursor(position: nil, generation: 0)
        }
        return ExtractCursor(position: try StateCodec.position(r[0]), generation: r[1].int ?? 0)
    }

    /// Refuses a write from an extractor that started before the latest rewind.
    func checkGeneration(_ name: String, _ expected: Int64) throws {
        let current = try db.query("SELECT extract_generation FROM streams WHERE name = ?\(db.dialect.forUpdate)", [.text(name)]).first?.first?.int ?? 0
        guard current == expected else {
            throw StateStoreError(.rewound, "stream \(name): the extract position was rewound (generation \(current), extractor started at \(expected))")
        }
    }

    func setExtractPosition(_ name: String, _ position: StreamPosition?) throws {
        try db.query("UPDATE streams SET extract_position = ? WHERE name = ?", [StateCodec.blob(position), .text(name)])
    }

    func setAppliedPosition(_ name: String, _ position: StreamPosition?) throws {
        try db.query("UPDATE streams SET applied_position = ? WHERE name = ?", [StateCodec.blob(position), .text(name)])
    }

    /// Moves the extract position back to the applied one; extractors still running under the old generation
    /// can no longer record anything.
    func rewindExtract(_ name: String) throws {
        try db.query("UPDATE streams SET extract_position = applied_position, extract_generation = extract_generation + 1 WHERE name = ?",
                     [.text(name)])
    }

    /// Forgets every position (the next run snapshots again).
    func clearPositions(_ name: String) throws {
        try db.query("""
            UPDATE streams SET snapshot_start = NULL, extract_position = NULL, applied_position = NULL, snapshot_completed_at = NULL,
                extract_generation = extract_generation + 1, updated_at = ? WHERE name = ?
            """, [.real(StateCodec.now), .text(name)])
    }

    func countExtracted(_ name: String, records: Int) throws {
        try db.query("UPDATE streams SET rows_extracted = rows_extracted + ?, updated_at = ? WHERE name = ?",
                     [.integer(Int64(records)), .real(StateCodec.now), .text(name)])
    }

    /// Counts an applied segment. Rows applied clear the last error (the stream is moving again); an empty
    /// segment (a position marker, e.g. after a drop event) leaves it for operators to see.
    func countApplied(_ name: String, applied: Int, stale: Int) throws {
        try db.query("""
            UPDATE streams SET rows_applied = rows_applied + ?, stale_skipped = stale_skipped + ?,
                last_error = CASE WHEN ? > 0 THEN NULL ELSE last_error END, updated_at = ?
            WHERE name = ?
            """, [.integer(Int64(applied)), .integer(Int64(stale)), .integer(Int64(applied + stale)), .real(StateCodec.now), .text(name)])
    }

    func recordError(_ name: String, _ message: String?) throws {
        try db.query("UPDATE streams SET last_error = ?, last_error_at = ? WHERE name = ?",
                     [message.map { .text(Redaction.redact($0)) } ?? .null, message == nil ? .null : .real(StateCodec.now), .text(name)])
    }

    func addDeadLetters(_ name: String, count: Int) throws {
        try db.query("UPDATE streams SET rows_deadlettered = rows_deadlettered + ? WHERE name = ?", [.integer(Int64(count)), .text(name)])
    }

    /// A fresh segment sequence number (monotone, never reused; one statement, so concurrent workers never draw
    /// the same number).
    /// Moves the next sequence past `seq` when it is not already; true when it moved.
    func raiseSequence(_ name: String, above seq: Int64) throws -> Bool {
        !(try db.query("UPDATE streams SET next_seq = ? WHERE name = ? AND next_seq <= ? RETURNING next_seq",
                       [.integer(seq + 1), .text(name), .integer(seq)])).isEmpty
    }

    func allocateSequence(_ name: String) throws -> Int64 {
        try db.query("UPDATE streams SET next_seq = next_seq + 1 WHERE name = ? RETURNING next_seq - 1", [.text(name)]).first?.first?.int ?? 1
    }
}
