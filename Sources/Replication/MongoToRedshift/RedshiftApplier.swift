import BSON
import Changes
import Foundation
import Logging
import PostgresClient
import ShiftCore
import Spool
import StateStore

/// Applies change batches to a Redshift/PostgreSQL table (docs/ARCHITECTURE.md, "Mongo → Redshift"). Per batch, in one transaction: the
/// stream's checkpoint row is locked and compared with the batch's sequence (a replayed batch changes nothing),
/// a staging table is loaded (COPY FROM STDIN on PostgreSQL, multi-row INSERTs on Redshift), target rows for the
/// batch's keys are deleted, the surviving upserts inserted, and the checkpoint advanced. Schema changes (new
/// columns, wider types) run as DDL just before, because Redshift cannot alter column types inside a transaction.
public actor RedshiftApplier: ChangeTarget {
    let context: StreamContext
    let source: PostgresSource
    let sql: TargetSQL
    let policy: RetryPolicy
    private var tracker: SchemaTracker
    /// The schema as the state store has it.
    private var savedSchema: TableSchema
    private var tableExists = false
    private var prepared = false
    /// The table has the generation column (added once to tables created before it existed).
    private var hasGenerationColumn = false
    private static let setupGate = ApplyGate()
    /// `load: copy`: batches staged in S3 and loaded with COPY (Redshift dialect).
    let copyLoader: CopyLoader?
    /// The cluster's slice count (`stv_slices`), read once: COPY files come in multiples of it.
    private var slices: Int?
    private var leftoversCollected = false
    /// PostgreSQL: the target has a unique index on `_id` (batches then upsert with ON CONFLICT); nil: not looked up.
    private var keyIndexed: Bool?
    /// PostgreSQL: a snapshot batch met a key already in the target (a re-snapshot, rows the tail wrote): later
    /// snapshot batches upsert instead of trying plain INSERTs first.
    private var snapshotKeysConflict = false
    /// PostgreSQL: the generation this worker last raised the target's generation fence to, outside a transaction
    /// (so the raise waits for the older pages in flight); 0 when the fence must be seeded and raised again.
    private var raisedGeneration: Int64 = 0

    public init(context: StreamContext, endpoint: RedshiftEndpoint, policy: RetryPolicy) async throws {
        self.context = context
        self.source = PostgresSource(url: endpoint.url, sessionSettings: endpoint.dialect == .postgres ? Self.postgresSessionSettings : [])
        self.sql = TargetSQL(dialect: endpoint.dialect, table: context.stream.table)
        self.policy = policy
        if let staging = endpoint.s3, context.stream.loadMethod(endpoint) == .copy {
            copyLoader = CopyLoader(stage: S3Stage(staging: staging, stream: context.name), worker: context.state.workerID,
                                    localDirectory: context.config.stateDirectory + "/tmp",
                                    logger: context.logger)
        } else {
            copyLoader = nil
        }
        let saved = try await context.state.loadColumns(context.name)
        let columns = saved.compactMap { c in ColumnType(persisted: c.type).map { TableSchema.Column(name: c.name, path: c.path, type: $0) } }
        tracker = SchemaTracker(schema: TableSchema(columns: columns), flatten: context.stream.flatten,
                                maxNameBytes: ColumnNaming.maxBytes(endpoint.dialect))
        savedSchema = tracker.schema
        tableExists = !columns.isEmpty
    }

    public var schema: TableSchema { tracker.schema }

    /// Forgets the learned schema (re-snapshot after the target was truncated/recreated by the operator).
    public func resetSchema() async throws {
        tracker = SchemaTracker(flatten: context.stream.flatten, maxNameBytes: tracker.maxNameBytes)
        tableExists = false
        keyIndexed = nil
        snapshotKeysConflict = false
        try await context.state.clearColumns(context.name)
        savedSchema = tracker.schema
    }

    private func prepare(_ c: PostgresConnection) async throws {
        if !prepared {
            // Streams sharing a schema start together: one at a time, so `IF NOT EXISTS` never races inside a
            // process (workers in other processes may still race; that error is retried, PostgresError).
            let sql = self.sql
            try await Self.setupGate.serially {
                // Only when missing: PostgreSQL checks CREATE on the database before `IF NOT EXISTS`, so a login
                // allowed to create tables in the schema (`public`, say) but not schemas failed on every start.
                if let schema = sql.createSchema(), let name = sql.table.schema,
                   try await c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [name]).rows.isEmpty {
                    try await c.execute(schema)
                }
                try await c.execute(sql.createCheckpoints())
            }
            try await c.query(sql.seedCheckpoint(), [context.checkpointKey])
            try await c.query(sql.seedCheckpoint(), [Self.generationFenceKey(context.checkpointKey)])
            prepared = true
        }
        if tableExists && !hasGenerationColumn {
            try await SchemaChanger(sql: sql, logger: context.logger).ensureGenerationColumn(on: c)
            hasGenerationColumn = true
        }
    }

    /// The target's checkpoints fence batches by sequence: a batch numbered at or below them is a replay and is
    /// skipped. A state older than the target (restored from a backup, a shared state store's failover that lost
    /// commits) would number new batches below them and lose them unseen, so the numbering resumes after them.
    public func numberAfterTheTargetsCheckpoints() async throws {
        let statement = sql.highestCheckpoint()
        let key = context.checkpointKey
        let partitionPrefix = Self.partitionFencePrefix(key)
        // SQL's LEFT counts characters: code points, not Swift's grapheme clusters.
        let parameters = [key, partitionPrefix, String(partitionPrefix.unicodeScalars.count)]
        let applied = try await source.run(policy, logger: context.logger, role: "target") { [self] c in
            try await self.prepare(c)
            return Int64(try await c.query(statement, parameters).rows.first?.first??.description ?? "0") ?? 0
        }
        if try await context.state.raiseSequence(context.name, above: applied) {
            context.logger.warning("the target has applied batches this state never numbered (a state older than the target: restored, or a lost commit); new batches are numbered after them",
                                   metadata: ["target_seq": "\(applied)"])
        }
    }

    /// The highest generation the target knows of: its rows' and its generation fence's (which outlives rows
    /// deleted or swept since).
    public func highestGeneration() async throws -> Int64 {
        let (rows, fence) = (sql.highestGeneration(), sql.generationFence())
        let fenceKey = Self.generationFenceKey(context.checkpointKey)
        let exists = tableExists
        return try await source.run(policy, logger: context.logger, role: "target") { [self] c in
            try await self.prepare(c)
            let fenced = Self.integer(try await c.query(fence, [fenceKey])) ?? 0
            return exists ? max(fenced, Self.integer(try await c.query(rows)) ?? 0) : fenced
        }
    }

    /// Removes the rows the snapshot of `generation` did not write, in a transaction fenced like a batch (the
    /// stream's checkpoint row locked, a newer lease epoch refuses it).
    public func sweep(olderThan generation: Int64) async throws {
        guard tableExists else { return }
        let name = context.checkpointKey
        let removed = try await source.run(policy, logger: context.logger, role: "target") { [self] c in
            try await self.prepare(c)
            try await c.execute("BEGIN")
            do {
                _ = try await self.lockCheckpoint(c, key: name, fenced: true)
                let result = try await c.query(self.sql.sweep(), [String(generation)])
                try await c.execute("COMMIT")
                return result.affectedRows
            } catch {
                _ = try? await c.execute("ROLLBACK")
                throw error
            }
        }
        if removed > 0 {
            context.logger.notice("snapshot swept rows it did not find (deleted while the history was lost)",
                                  metadata: ["rows": "\(removed)", "generation": "\(generation)"])
        }
    }

    public func apply(_ changes: [Change], segment: SegmentRecord) async throws -> ApplyOutcome {
        try await commit(try batch(changes, learningFrom: tracker), fence: segment)
    }

    public nonisolated func prepare(_ changes: [Change], segment: SegmentRecord, after previous: PreparedSegment?) async throws -> PreparedSegment {
        // Built off the actor: the batch in the target's transaction resumes on it meanwhile.
        let base = if let earlier = previous?.work as? Batch { earlier.tracker } else { await tracker }
        return PreparedSegment(segment: segment, changes: [], work: try batch(changes, learningFrom: base))
    }

    public func apply(_ prepared: PreparedSegment) async throws -> ApplyOutcome {
        guard let batch = prepared.work as? Batch else { return try await apply(prepared.changes, segment: prepared.segment) }
        return try await commit(batch, fence: prepared.segment)
    }

    /// `verify --repair`: the same load, without the checkpoint fence — a repair must not advance the
    /// checkpoint past segments a running daemon has not applied yet.
    public func repair(_ changes: [Change]) async throws -> ApplyOutcome {
        // `verify --repair` may run beside this worker's `run`: the files under its `load/` prefix may be the
        // running applier's, in flight. Leftovers are that applier's to collect.
        leftoversCollected = true
        return try await commit(try batch(changes, learningFrom: tracker), fence: nil)
    }

    /// A batch ready for its transaction: the schema learned from its documents (adopted only once the batch is
    /// in the target, so a failed schema change is sent again on retry) and its rows as text.
    struct Batch: Sendable {
        /// The schema tracker after the batch's documents (its changes are measured at commit, against what the
        /// target holds then).
        var tracker: SchemaTracker
        /// PostgreSQL: the rows as COPY text; Redshift: as parameters or COPY files.
        var copyText: [UInt8]
        var rows: StagedRows
        var loadedRows: Int
        var deletes: Int
        var deadLetters: [DeadLetterFile.Entry]
    }

    /// Learns the schema from the batch's documents (starting from `base`) and writes its rows as text, with
    /// oversized values dead-lettered (never truncated). Pure: nothing is kept until `commit`.
    ///
    /// One walk per document learns its fields and places its values. A document that changes the schema (a new
    /// column, a wider type) restarts the rows with the schema as it is now — rows written before it no longer
    /// fit; after `maxRestarts` the remaining documents are learned first, so the last restart is final.
    private nonisolated func batch(_ changes: [Change], learningFrom base: SchemaTracker) throws -> Batch {
        // One row per key text (`KeyText`): numerically equal `_id`s of different types are one document.
        let latest = changes.latestPerKey(by: KeyText.identity)
        var tracker = base
        var restarts = 0
        var writer: BatchRowWriter
        var deadLetters: [DeadLetterFile.Entry] = []
        var deletes = 0
        rows: while true {
            writer = BatchRowWriter(dialect: sql.dialect, schema: tracker.schema, capacity: changes.count * 128)
            deadLetters = []
            deletes = 0
            for (position, change) in latest.enumerated() {
                if change.operation == .delete {
                    // (No row before the first document: nothing can be in the target yet.)
                    if !writer.schema.columns.isEmpty {
                        writer.addDelete(change.key)
                        deletes += 1
                    }
                    continue
                }
                guard let doc = change.document else { continue }
                let outcome: BatchRowWriter.Outcome
                do {
                    outcome = try writer.add(doc, learningInto: &tracker)
                } catch {
                    throw ReplicationError(.sourceData, stream: context.name, "\(error)")
                }
                switch outcome {
                case .written:
                    break
                case .tooLarge(let error):
                    deadLetters.append(.init(key: change.key, reason: "\(error)"))
                case .schemaChanged:
                    restarts += 1
                    if restarts > Self.maxRestarts {
                        do {
                            _ = try tracker.observe(latest[(position + 1)...].compactMap { $0.operation == .upsert ? $0.document : nil })
                        } catch {
                            throw ReplicationError(.sourceData, stream: context.name, "\(error)")
                        }
                    }
                    continue rows
                }
            }
            break
        }
        return Batch(tracker: tracker, copyText: writer.copyText.bytes,
                     rows: writer.rows, loadedRows: writer.rowCount, deletes: deletes, deadLetters: deadLetters)
    }

    /// Schema changes within one batch that restart its rows before the rest is learned up front.
    static let maxRestarts = 4

    /// Puts a prepared batch in the target (schema changes first, then the fenced transaction) and adopts the
    /// schema it learned.
    private func commit(_ batch: Batch, fence segment: SegmentRecord?) async throws -> ApplyOutcome {
        var outcome = ApplyOutcome(deadLetters: batch.deadLetters)
        let schema = batch.tracker.schema
        guard !schema.columns.isEmpty else {
            // Only deletes before any document was ever seen: nothing can be in the target yet.
            if let segment { try await fenceOnly(segment) }
            return outcome
        }
        // Measured from the schema the target holds (adopted at each commit), not from the batch prepared before
        // this one, which may not have been committed (a snapshot page a reset forgot is skipped).
        let previous = tracker.schema
        let schemaChanges = batch.tracker.changes(since: previous)
        let rows = batch.rows
        let copyBytes = batch.copyText
        let sqlText = sql
        let name = context.checkpointKey
        let changer = SchemaChanger(sql: sqlText, logger: context.logger)
        let exists = tableExists
        let generation: Int64
        if let segment, segment.kind == .snapshot {
            guard let recorded = try await context.state.snapshotGeneration(ifRecorded: segment) else {
                // A page of a plan a reset forgot (a helper applying it late): its rows may be older than the new
                // snapshot's start, and nothing after it would correct them.
                context.logger.notice("snapshot page of a forgotten plan not applied", metadata: ["segment": "\(segment.seq)"])
                return ApplyOutcome()
            }
            generation = recorded
        } else {
            generation = try await context.state.snapshotGeneration(context.name)
        }
        let staged = try await stageForCopy(rows, schema: schema, batch: segment.map { "\($0.seq)" } ?? "repair")
        let applied: Bool
        do {
            applied = try await source.run(policy, logger: context.logger, role: "target") { [self] c in
                try await self.prepare(c)
                if exists {
                    try await changer.apply(schemaChanges, schema: schema, previous: previous, on: c)
                } else {
                    try await c.execute(sqlText.createTable(schema))
                }
                func load(_ upsert: Upsert) async throws -> Bool {
                    try await self.load(c, rows: rows, copyText: copyBytes, staged: staged, schema: schema, segment: segment, stream: name,
                                        generation: generation, upsert: upsert)
                }
                guard try await self.keyIndexed(c) else { return try await load(.deleteAndInsert) }
                // A snapshot batch (upserts only) into keys the target does not hold yet: plain INSERTs, a third
                // cheaper than ON CONFLICT's speculative inserts; the unique index refuses any key already there
                // (the transaction rolls back) and the batch upserts after all.
                if segment?.kind == .snapshot, batch.deletes == 0, await !self.snapshotKeysConflict {
                    do {
                        return try await load(.insertOnly)
                    } catch let error as PostgresError where error.sqlState == "23505" || error.sqlState == "0A000" {
                        // A key already there — or COPY refused outright (row-level security on the target).
                        await self.snapshotKeysMet(error)
                    } catch let error as PostgresError where error.sqlState == "42P10" {
                        await self.noKeyIndex(because: error)
                        return try await load(.deleteAndInsert)
                    }
                }
                do {
                    return try await load(.onConflict(deletes: batch.deletes > 0))
                } catch let error as PostgresError where error.sqlState == "42P10" || error.sqlState == "55000" {
                    // The index went away or cannot arbitrate after all (the transaction was rolled back): the
                    // same batch again, the way tables without one are loaded.
                    await self.noKeyIndex(because: error)
                    return try await load(.deleteAndInsert)
                }
            }
        } catch let superseded as GenerationSuperseded {
            if let staged { await copyLoader?.remove(staged) }
            return try await skip(segment, generation: generation, superseded: superseded)
        } catch {
            if let staged { await copyLoader?.remove(staged) }
            throw error
        }
        if let staged { await copyLoader?.remove(staged) }
        tracker = batch.tracker
        // Saved whenever the store's copy differs (not only with this batch's changes: a failed save is made up
        // by the next batch, even a replayed one).
        if schema != savedSchema {
            try await context.state.saveColumns(context.name, schema.columns.map { StoredColumn(name: $0.name, path: $0.path, type: $0.type.description) })
            savedSchema = schema
        }
        if !tableExists || !schemaChanges.isEmpty {
            let created = !tableExists
            tableExists = true
            if created { hasGenerationColumn = true }
            if created {
                context.logger.info("created target table", metadata: ["table": "\(sqlText.target)", "columns": "\(schema.columns.count)"])
            } else {
                for change in schemaChanges {
                    switch change {
                    case .widenColumn(let c, let old):
                        context.logger.info("widened column", metadata: ["column": "\(c.name)", "from": "\(old.sql(sqlText.dialect))",
                                                                      "to": "\(c.type.sql(sqlText.dialect))"])
                    case .addColumn(let c):
                        context.logger.info("added column", metadata: ["column": "\(c.name)", "type": "\(c.type.sql(sqlText.dialect))"])
                    }
                }
            }
        }
        outcome.applied = applied ? batch.loadedRows : 0
        return outcome
    }

    /// The transaction. Returns false when the checkpoint shows the batch was already applied (a replay).
    /// How the staged rows reach the target.
    enum Upsert {
        /// Every staged key's row deleted, the upserts inserted (Redshift: no ON CONFLICT, no enforced keys).
        case deleteAndInsert
        /// PostgreSQL with a unique index on `_id`: the deletes (when the batch has any), then INSERT … ON CONFLICT.
        case onConflict(deletes: Bool)
        /// PostgreSQL with a unique index on `_id`, a snapshot batch: plain INSERTs (a key already there fails it).
        case insertOnly
    }

    private func snapshotKeysMet(_ error: PostgresError) {
        snapshotKeysConflict = true
        context.logger.info("snapshot pages cannot be copied straight into the target: they upsert from now on",
                            metadata: ["table": "\(sql.target)", "error": "\(error)"])
    }

    /// PostgreSQL: whether the target has a unique index on `_id` alone (looked up once; tables mongoshift creates
    /// have their primary key there, a table created by hand may not).
    private func keyIndexed(_ c: PostgresConnection) async throws -> Bool {
        guard sql.dialect == .postgres else { return false }
        if let keyIndexed { return keyIndexed }
        let count = try await c.query(sql.keyIndexCount(), [sql.target]).rows.first?.first??.description ?? "0"
        if (Int(count) ?? 0) > 0 {
            keyIndexed = true
        } else {
            noKeyIndex(because: nil)
        }
        return keyIndexed ?? false
    }

    private func noKeyIndex(because error: PostgresError?) {
        keyIndexed = false
        context.logger.notice("the target has no usable unique index on _id: batches delete and re-insert their keys' rows",
                              metadata: ["table": "\(sql.target)", "error": "\(error.map { "\($0)" } ?? "none")"])
    }

    private func load(_ c: PostgresConnection, rows: StagedRows, copyText: [UInt8], staged: CopyLoader.Staged?, schema: TableSchema, segment: SegmentRecord?,
                      stream: String, generation: Int64, upsert: Upsert) async throws -> Bool {
        let generationFence = Self.generationFenceKey(stream)
        var fenceRaises = 0
        while true {
            if segment?.kind == .snapshot, sql.dialect == .postgres, generation > raisedGeneration {
                // Waits for the older generation's pages still in their transactions (they hold the fence shared).
                try await raiseGenerationFence(c, key: generationFence, to: generation)
                raisedGeneration = generation
                fenceRaises += 1
            }
            // The generation the rows carry: a repair's rows are read from the source now, as new as any snapshot's.
            var stamp = generation
            try await c.execute("BEGIN")
            do {
                if let segment {
                    // Snapshot pages are fenced per partition (workers copy partitions side by side); the rest per stream,
                    // and by lease epoch: a worker whose lease was taken over cannot apply after the new owner did.
                    let current = try await lockCheckpoint(c, key: fenceKey(segment, stream), fenced: segment.kind != .snapshot)
                    if current >= segment.seq {
                        try await c.execute("ROLLBACK")
                        context.logger.info("batch already in the target (checkpoint fence); skipped", metadata: ["seq": "\(segment.seq)"])
                        return false
                    }
                    if segment.kind == .snapshot {
                        // ... and by snapshot generation: a page of an older snapshot never lands after a newer one's.
                        switch try await checkGenerationFence(c, key: generationFence, generation: generation) {
                        case .admitted:
                            break
                        case .superseded(let held):
                            throw GenerationSuperseded(held: held)  // rolled back below
                        case .raiseAgain:
                            try await c.execute("ROLLBACK")
                            raisedGeneration = 0
                            guard fenceRaises < 3 else {
                                throw ReplicationError(.internal, stream: context.name, "the target's generation fence \(generationFence) cannot be raised to \(generation)")
                            }
                            continue
                        }
                    }
                } else {
                    if let lock = sql.lockCheckpoints() { try await c.execute(lock) }
                    // `verify --repair`: its rows stamped with the newest generation, so a snapshot under way keeps
                    // them (PostgreSQL: a new generation's first page waits for this transaction).
                    let held = Self.integer(try await c.query(sql.readGenerationFence(), [generationFence]))
                    stamp = max(generation, held ?? 0)
                }
                if case .insertOnly = upsert {
                    // Straight into the target: no stage to fill and read back.
                    try await copy(c, text: copyText, into: sql.copyTarget(schema), lastColumn: Array(String(stamp).utf8))
                } else {
                    for statement in sql.createStage(schema) { try await c.execute(statement) }
                }
                switch sql.dialect {
                case .postgres:
                    if case .insertOnly = upsert { break }
                    try await copy(c, text: copyText, into: sql.copyStage(schema))
                case .redshift:
                    if let staged, let copyLoader {
                        if staged.rows > 0 { try await c.execute(try await copyLoader.copyStatement(stageTable: sql.stage, schema: schema, staged: staged)) }
                        if !staged.oversized.isEmpty { try await insert(c, rows: staged.oversized, schema: schema) }
                        CrashPoint.hit(CrashPoint.loadCopied)
                    } else {
                        try await insert(c, rows: rows, schema: schema)
                    }
                }
                switch upsert {
                case .deleteAndInsert:
                    try await c.execute(sql.deleteChanged())
                    try await c.query(sql.insertUpserts(schema), [String(stamp)])
                case .onConflict(let deletes):
                    if deletes { try await c.execute(sql.deleteRemoved()) }
                    try await c.query(sql.upsertOnConflict(schema), [String(stamp)])
                case .insertOnly:
                    // COPY has no arbiter: the unique index the batch relied on must still be there (looked up once per
                    // run; the COPY's lock now keeps it from being dropped until commit).
                    let count = try await c.query(sql.keyIndexCount(), [sql.target]).rows.first?.first??.description ?? "0"
                    if (Int(count) ?? 0) == 0 {
                        throw PostgresError(code: .server, sqlState: "42P10", message: "the target's unique index on _id is gone", query: sql.target)
                    }
                }
                if let segment {
                    try await c.query(sql.advanceCheckpoint(), [fenceKey(segment, stream), String(segment.seq), segment.lastPosition?.extendedJSON ?? "",
                                                                String(segment.kind == .snapshot ? 0 : leaseEpoch)])
                }
                try await c.execute("COMMIT")
                if staged != nil { CrashPoint.hit(CrashPoint.loadCommitted) }
                return true
            } catch {
                _ = try? await c.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// `load: copy`: the batch's rows written and uploaded before the transaction (nil otherwise: they go by
    /// multi-row INSERT). The first batch of a run first removes what an earlier run left in the worker's `load/`
    /// prefix. A table with a VARBYTE column loads by INSERT: Redshift's COPY cannot fill VARBYTE from JSON.
    private func stageForCopy(_ rows: StagedRows, schema: TableSchema, batch: String) async throws -> CopyLoader.Staged? {
        guard let copyLoader, !rows.isEmpty, !schema.columns.contains(where: { if case .binary = $0.type { true } else { false } }) else { return nil }
        if !leftoversCollected {
            _ = try await copyLoader.collectLeftovers()
            leftoversCollected = true
        }
        if slices == nil {
            // Only tunes how many files a batch is split into: Redshift Serverless has no STV tables (and a login
            // may lack the grant), so any failure but a lost connection falls back to a guess.
            do {
                slices = try await source.run(policy, logger: context.logger, role: "target") { c in
                    Int(try await c.query("SELECT CAST(count(*) AS integer) FROM stv_slices").rows.first?.first??.description ?? "1") ?? 1
                }
            } catch let error as PostgresError where error.sqlState != nil {
                context.logger.notice("cannot count the cluster's slices (stv_slices): staging \(Self.assumedSlices) files a batch", metadata: ["error": "\(error.message)"])
                slices = Self.assumedSlices
            }
        }
        return try await copyLoader.upload(rows: rows, schema: schema, batch: "\(batch)-\(UInt32.random(in: 0...UInt32.max))", slices: slices ?? 1)
    }

    /// Files a COPY batch is split into when the cluster's slices cannot be counted (Serverless).
    static let assumedSlices = 4

    /// In the open transaction: takes the checkpoint lock (Redshift: before anything else), seeds the fence row
    /// `key` when missing, and reads it. `fenced`: a newer lease epoch in the row refuses the transaction (a worker
    /// whose lease was taken over cannot write after the new owner did). Returns the row's sequence.
    private func lockCheckpoint(_ c: PostgresConnection, key: String, fenced: Bool) async throws -> Int64 {
        if let lock = sql.lockCheckpoints() { try await c.execute(lock) }
        try await c.query(sql.seedCheckpoint(), [key])
        let row = try await c.query(sql.readCheckpoint(), [key]).rows.first
        let epoch = Int64((row?.count ?? 0) > 1 ? row?[1] ?? "0" : "0") ?? 0
        if fenced, epoch > leaseEpoch {
            throw ReplicationError(.fenced, stream: context.name,
                                   "the target's checkpoint carries lease epoch \(epoch), newer than this worker's \(leaseEpoch): not writing")
        }
        return Int64(row?[0] ?? "0") ?? 0
    }

    /// The checkpoint row a segment is fenced by: the stream's, or for snapshot pages the partition's.
    func fenceKey(_ segment: SegmentRecord, _ stream: String) -> String {
        segment.kind == .snapshot ? String((Self.partitionFencePrefix(stream) + "\(segment.partition)").prefix(127)) : stream
    }

    /// The first value of a result as an integer; nil without a row, a NULL or a non-integer.
    static func integer(_ result: PostgresRows) -> Int64? {
        result.rows.first?.first.flatMap { $0 }.flatMap { Int64($0) }
    }

    /// PostgreSQL ends a stuck transaction of an applier and frees its locks — a new snapshot generation's first page
    /// waits for the older pages' transactions (the generation fence). Idle for a minute inside one (its worker
    /// frozen, paused between statements): every transaction is driven without pause. A worker whose machine or
    /// network went away: about two minutes of unanswered keepalives. (A process stopped in the middle of a COPY is
    /// still answered by its kernel: docs/RELIABILITY.md, "Known limits".)
    public static let postgresSessionSettings = ["SET idle_in_transaction_session_timeout = '60s'", "SET tcp_keepalives_idle = 60",
                                                 "SET tcp_keepalives_interval = 10", "SET tcp_keepalives_count = 6"]

    /// What a stream's snapshot partitions' checkpoint keys start with.
    static func partitionFencePrefix(_ stream: String) -> String { stream + "#p" }

    /// The checkpoint row that holds the newest snapshot generation whose pages reached the target (its `seq`).
    static func generationFenceKey(_ stream: String) -> String { stream + "#gen" }

    /// What a snapshot page's transaction found in the generation fence.
    enum FenceCheck {
        case admitted
        /// A newer snapshot's pages were applied: this page must not be.
        case superseded(Int64)
        /// PostgreSQL: the fence row was removed or lowered since this worker raised it (the checkpoint table
        /// recreated): to be raised again outside a transaction, then the page again.
        case raiseAgain
    }

    /// In a snapshot page's transaction: reads the generation fence (PostgreSQL: holding it shared); on Redshift,
    /// under the checkpoint table's lock, raises it when it is lower (nothing else reads or raises it meanwhile).
    private func checkGenerationFence(_ c: PostgresConnection, key: String, generation: Int64) async throws -> FenceCheck {
        let held = Self.integer(try await c.query(sql.readGenerationFence(), [key]))
        if let held, held > generation { return .superseded(held) }
        guard (held ?? 0) < generation else { return .admitted }
        guard sql.dialect == .redshift else { return .raiseAgain }
        try await raiseGenerationFence(c, key: key, to: generation)
        return .admitted
    }

    /// Seeds the generation fence row when missing and raises it to `generation` (never lowers it).
    private func raiseGenerationFence(_ c: PostgresConnection, key: String, to generation: Int64) async throws {
        try await c.query(sql.seedCheckpoint(), [key])
        try await c.query(sql.raiseGenerationFence(), [key, String(generation)])
    }

    /// A snapshot page's generation is older than the target's fence: a newer snapshot's pages were applied.
    struct GenerationSuperseded: Error {
        let held: Int64
    }

    /// After a page was refused by the generation fence: a page its plan forgot (a reset raced with this apply)
    /// is skipped; one still recorded means this state store is older than the target.
    private func skip(_ segment: SegmentRecord?, generation: Int64, superseded: GenerationSuperseded) async throws -> ApplyOutcome {
        if let segment, try await context.state.snapshotGeneration(ifRecorded: segment) == generation {
            throw ReplicationError(.configuration, stream: context.name,
                                   "the target holds snapshot generation \(superseded.held), newer than this state's \(generation) (a state store older than the target, restored from a backup?): `mongoshift reset --stream \(context.name) --to snapshot` re-snapshots")
        }
        context.logger.notice("snapshot page of a forgotten plan not applied (a newer snapshot's pages are in the target)",
                              metadata: ["segment": "\(segment?.seq ?? 0)", "generation": "\(generation)", "target_generation": "\(superseded.held)"])
        return ApplyOutcome()
    }

    var leaseEpoch: Int64 { context.lease?.epoch ?? 0 }

    private func fenceOnly(_ segment: SegmentRecord) async throws {
        let name = context.checkpointKey
        try await source.run(policy, logger: context.logger, role: "target") { [self] c in
            try await self.prepare(c)
            try await c.query(self.sql.advanceCheckpoint() + " AND seq < $2", [self.fenceKey(segment, name), String(segment.seq),
                                                                               segment.lastPosition?.extendedJSON ?? "", String(self.leaseEpoch)])
        }
    }

    /// PostgreSQL: the batch's COPY text into the stage, a MiB at a time; `lastColumn`: into the target, each row's
    /// last column (the op) replaced by these bytes (the generation).
    private func copy(_ c: PostgresConnection, text: [UInt8], into statement: String, lastColumn: [UInt8]? = nil) async throws {
        final class Feed: @unchecked Sendable {
            // @unchecked: consumed only on the connection's thread during one copyIn call.
            var offset = 0
        }
        let feed = Feed()
        let name = context.name
        try await c.copyIn(statement) {
            guard feed.offset < text.count else { return nil }
            var end = min(text.count, feed.offset + (1 << 20))
            guard let lastColumn else {
                defer { feed.offset = end }
                return Array(text[feed.offset..<end])
            }
            // Whole rows, each one's last column (`__op`, always `u` here) replaced: a raw newline only ends a row
            // (newlines inside values are escaped).
            while end < text.count && text[end - 1] != 0x0A { end += 1 }
            var chunk: [UInt8] = []
            chunk.reserveCapacity(end - feed.offset + (end - feed.offset) / 16)
            var rowStart = feed.offset
            for i in feed.offset..<end where text[i] == 0x0A {
                guard text[i - 1] == UInt8(ascii: "u") else { throw ReplicationError(.internal, stream: name, "a delete row in a snapshot page") }
                chunk.append(contentsOf: text[rowStart..<(i - 1)])
                chunk.append(contentsOf: lastColumn)
                chunk.append(0x0A)
                rowStart = i + 1
            }
            feed.offset = end
            return chunk
        }
    }

    /// Redshift: multi-row INSERTs, each under 16 MB of statement text and 32,000 parameters, bound from the
    /// staged values as they are.
    private func insert(_ c: PostgresConnection, rows: StagedRows, schema: TableSchema) async throws {
        for batch in Self.insertBatches(rows) {
            try await c.query(sql.insertStage(schema, rows: batch.count), rows.values, range: rows.parameterRange(batch))
        }
    }

    static let maxStatementBytes = 15 << 20

    /// Splits rows so that each INSERT stays under Redshift's 16 MB statement limit and 32,000 parameters.
    static func insertBatches(_ rows: StagedRows) -> [Range<Int>] {
        let maxRows = max(1, min(1000, 32_000 / max(1, rows.width)))
        var out: [Range<Int>] = []
        var start = 0, bytes = 0
        for row in 0..<rows.count {
            // Placeholders and separators cost ~8 bytes a value besides the value itself.
            let rowBytes = rows.byteCount(ofRow: row) + 8 * rows.width
            if row > start && (row - start >= maxRows || bytes + rowBytes > maxStatementBytes) {
                out.append(start..<row)
                start = row
                bytes = 0
            }
            bytes += rowBytes
        }
        if start < rows.count { out.append(start..<rows.count) }
        return out
    }
}
