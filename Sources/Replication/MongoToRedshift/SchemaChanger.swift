import Logging
import PostgresClient

/// Runs a batch's schema changes on the target, before and outside its data transaction (Redshift cannot change
/// a column's type inside one). Every step can run again after a crash at any point: each looks at the catalog
/// first (which columns and tables exist) and does only what is left.
///
/// - New columns: `ADD COLUMN` (already there: done). Nothing is tried and forgiven: every statement sent is one
///   the target accepts.
/// - PostgreSQL widens in place (`ALTER COLUMN … TYPE … USING`), key columns included.
/// - Redshift grows a non-key VARCHAR in place; other non-key widenings move through a new column (add, copy,
///   drop, rename); a key column (`_id`) can be neither altered nor dropped, so the table is rebuilt and swapped in
///   by two renames in one transaction.
struct SchemaChanger {
    let sql: TargetSQL
    let logger: Logger

    func apply(_ changes: [SchemaChange], schema: TableSchema, previous: TableSchema, on c: PostgresConnection) async throws {
        guard !changes.isEmpty else { return }
        let keyWidened = changes.contains { if case .widenColumn(let column, _) = $0 { column.name == "_id" } else { false } }
        if sql.dialect == .redshift && keyWidened {
            var current = previous
            if let key = current.columns.firstIndex(where: { $0.path == "_id" }) {
                current.columns[key].type = try await keyTypeFound(current.columns[key].type, on: c)
            }
            // The rebuilt table keeps every column the target has, as wide as it has it — also those another
            // worker added or widened (this worker's schema would have dropped or narrowed them).
            var wanted = schema
            for (name, have) in try await catalog(on: c).types where name != "_id" && name != TargetSQL.generationColumn {
                if let i = wanted.columns.firstIndex(where: { $0.name == name }) {
                    wanted.columns[i].type = have.widened(with: wanted.columns[i].type)
                    if let j = current.columns.firstIndex(where: { $0.name == name }) { current.columns[j].type = have }
                } else {
                    wanted.columns.append(.init(name: name, path: name, type: have))
                    current.columns.append(.init(name: name, path: name, type: have))
                }
            }
            try await rebuild(wanted, from: current, on: c)
            return
        }
        // Each change starts from the column as the target has it, not as this worker last knew it: another worker
        // (a shared snapshot's helper) may have added or widened it since — "widening" a DOUBLE back to BIGINT
        // rounded every fraction it held.
        let (actual, present) = try await catalog(on: c)
        for change in changes {
            switch change {
            case .addColumn(let column):
                if let have = actual[column.name] {
                    try await widen(column, from: have, on: c)
                } else if !present.contains(column.name) {
                    try await c.execute(sql.addColumn(column))
                }
            case .widenColumn(let column, let old):
                try await widen(column, from: actual[column.name] ?? old, on: c)
            }
        }
    }

    /// `column` (of the type this worker needs) from `have`, to the type holding both; nothing when `have` already does.
    private func widen(_ column: TableSchema.Column, from have: ColumnType, on c: PostgresConnection) async throws {
        var target = column
        target.type = column.path == "_id" ? have.widenedKey(with: column.type) : have.widened(with: column.type)
        if target.type == have { return }
        if sql.dialect == .postgres || have.canAlterInPlace(to: target.type, dialect: sql.dialect) {
            try await c.execute(sql.alterColumnType(target, from: have))
        } else {
            try await swap(target, from: have, on: c)
        }
    }

    /// The target's columns: the types of those whose type mongoshift makes, and every name (a column of another
    /// type — made by an operator — exists all the same: it is never added again).
    private func catalog(on c: PostgresConnection) async throws -> (types: [String: ColumnType], names: Set<String>) {
        var types: [String: ColumnType] = [:]
        var names = Set<String>()
        for row in try await c.query(sql.catalogColumns(), sql.catalogParameters).rows {
            guard let name = row[0] else { continue }
            names.insert(name)
            if let dataType = row[1], let type = ColumnType(catalogType: dataType, length: row[2].flatMap { Int($0) }, scale: row[3].flatMap { Int($0) }) {
                types[name] = type
            }
        }
        return (types, names)
    }

    private func swap(_ column: TableSchema.Column, from old: ColumnType, on c: PostgresConnection) async throws {
        let steps = sql.columnSwap(column, from: old)
        let present = try await catalogColumnNames(on: c)
        switch (present.contains(column.name), present.contains(steps.temporary)) {
        case (true, false):
            try await c.execute(steps.addTemporary)
            try await c.execute(steps.copy)
            try await c.execute(steps.dropOld)
            try await c.execute(steps.renameTemporary)
        case (true, true):
            // A crash after adding (or filling) the new column: fill it again, then finish.
            try await c.execute(steps.copy)
            try await c.execute(steps.dropOld)
            try await c.execute(steps.renameTemporary)
        case (false, true):
            // A crash between the drop and the rename.
            try await c.execute(steps.renameTemporary)
        case (false, false):
            throw PostgresError(code: .unexpectedResult, message: "column \(column.name) of \(sql.target) is missing: neither it nor \(steps.temporary) exists")
        }
    }

    private func rebuild(_ schema: TableSchema, from previous: TableSchema, on c: PostgresConnection) async throws {
        let plan = sql.tableRebuild(schema, from: previous)
        // A crash after the swap left the old table: gone first (the rebuilt one is the target now).
        try await c.execute(plan.dropOld)
        try await c.execute(plan.dropRebuild)
        try await c.execute(plan.create)
        try await c.execute(plan.fill)
        try await c.execute("BEGIN")
        do {
            for statement in plan.swap { try await c.execute(statement) }
            try await c.execute("COMMIT")
        } catch {
            _ = try? await c.execute("ROLLBACK")
            throw error
        }
        try await c.execute(plan.dropOld)
        logger.notice("rebuilt the target table to widen its key column", metadata: ["table": "\(sql.target)"])
    }

    /// Adds the snapshot-generation column to a table created before it existed, unless it is there.
    func ensureGenerationColumn(on c: PostgresConnection) async throws {
        if try await !catalogColumnNames(on: c).contains(TargetSQL.generationColumn) {
            try await c.execute(sql.addGenerationColumn())
        }
    }

    private func catalogColumnNames(on c: PostgresConnection) async throws -> Set<String> {
        Set(try await c.query(sql.catalogColumns(), sql.catalogParameters).rows.compactMap { $0[0] })
    }

    /// The key column's type as the target has it: text already when this change ran before (a batch retried
    /// after its load failed, a crash before its commit) — converting the key text again would wrap it twice.
    private func keyTypeFound(_ expected: ColumnType, on c: PostgresConnection) async throws -> ColumnType {
        if case .varchar = expected { return expected }
        let rows = try await c.query(sql.catalogColumns(), sql.catalogParameters).rows
        guard let row = rows.first(where: { $0[0] == "_id" }), let type = row[1] else { return expected }
        guard type == "character varying" || type == "text" else { return expected }
        return .varchar(row[2].flatMap { Int($0) } ?? ColumnType.maxVarchar)
    }

}
