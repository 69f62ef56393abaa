import BSON
import PostgresClient

/// When a soft-delete column says "deleted" — one rule for the row encoder (Swift) and the reconciler (SQL), so
/// a row is never live on one side and deleted on the other. True: boolean true, a non-zero number, or text that
/// is (case-insensitively, trimmed) one of `t`, `true`, `y`, `yes`, `on`, `1`. NULL is live.
enum SoftDelete {
    static let trueTexts = ["t", "true", "y", "yes", "on", "1"]

    static func isDeleted(_ value: BSON) -> Bool {
        switch value {
        case .bool(let b): b
        case .int32(let i): i != 0
        case .int64(let i): i != 0
        case .double(let d): d != 0
        case .decimal128(let d): d.parts.coefficient != 0
        case .string(let s): trueTexts.contains(s.trimmingCharacters(in: .whitespaces).lowercased())
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
        default:
            let list = trueTexts.map { "'\($0)'" }.joined(separator: ", ")
            return "coalesce(lower(trim(\(c)::varchar)), '') NOT IN (\(list))"
        }
    }
}
