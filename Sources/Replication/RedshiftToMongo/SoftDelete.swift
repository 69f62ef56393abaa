import BSON
import PostgresClient

/// When a soft-delete column says "deleted" — one rule for the row encoder (Swift) and the reconciler (SQL), so
/// a row is never live on one side and deleted on the other. True: boolean true, a non-zero number, text that
/// is (case-insensitively, trimmed of blanks) one of `t`, `true`, `y`, `yes`, `on`, `1`, or any date or timestamp
/// (a `deleted_at` column). NULL is live. Columns of other types are refused (`refusal`).
enum SoftDelete {
    static let trueTexts = ["t", "true", "y", "yes", "on", "1"]

    /// Nil when the column's type can say "deleted"; else why not.
    static func refusal(_ column: PostgresColumn) -> String? {
        let t = column.typeOID
        if t == PostgresType.bool || PostgresType.integers.contains(t) || PostgresType.temporal.contains(t)
            || [PostgresType.numeric, PostgresType.float4, PostgresType.float8, PostgresType.text, PostgresType.varchar,
                PostgresType.bpchar, PostgresType.name].contains(t) {
            return nil
        }
        return "soft-delete column \"\(column.name)\" must be a boolean, number, text, date or timestamp column (deleted: true, non-zero, "
            + "yes/true/1, or any date — `deleted_at`)"
    }

    static func isDeleted(_ value: BSON, type: UInt32) -> Bool {
        if PostgresType.temporal.contains(type) { return value != .null }
        return switch value {
        case .bool(let b): b
        case .int32(let i): i != 0
        case .int64(let i): i != 0
        case .double(let d): d != 0
        case .decimal128(let d): d.parts.coefficient != 0
        case .string(let s): trueTexts.contains(s.trimmingCharacters(in: [" "]).lowercased())
        default: false
        }
    }

    /// A SQL condition true for live rows, typed by the column (no cast that could fail on a value).
    static func liveCondition(_ column: PostgresColumn) -> String {
        let c = SQL.identifier(column.name)
        switch column.typeOID {
        case PostgresType.bool:
            return "\(c) IS NOT TRUE"
        case _ where PostgresType.integers.contains(column.typeOID) || column.typeOID == PostgresType.numeric
            || column.typeOID == PostgresType.float4 || column.typeOID == PostgresType.float8:
            return "coalesce(\(c), 0) = 0"
        case _ where PostgresType.temporal.contains(column.typeOID):
            return "\(c) IS NULL"
        default:
            let list = trueTexts.map { "'\($0)'" }.joined(separator: ", ")
            return "coalesce(lower(trim(\(c)::varchar)), '') NOT IN (\(list))"
        }
    }
}
