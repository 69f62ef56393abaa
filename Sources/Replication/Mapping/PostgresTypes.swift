/// Type OIDs of the PostgreSQL / Redshift types mongoshift maps (docs/ARCHITECTURE.md, "Types").
public enum PostgresType {
    public static let bool: UInt32 = 16
    public static let bytea: UInt32 = 17
    public static let name: UInt32 = 19
    public static let int8: UInt32 = 20
    public static let int2: UInt32 = 21
    public static let int4: UInt32 = 23
    public static let text: UInt32 = 25
    public static let oid: UInt32 = 26
    public static let json: UInt32 = 114
    public static let float4: UInt32 = 700
    public static let float8: UInt32 = 701
    public static let bpchar: UInt32 = 1042
    public static let varchar: UInt32 = 1043
    public static let date: UInt32 = 1082
    public static let time: UInt32 = 1083
    public static let timestamp: UInt32 = 1114
    public static let timestamptz: UInt32 = 1184
    public static let timetz: UInt32 = 1266
    public static let numeric: UInt32 = 1700
    public static let uuid: UInt32 = 2950
    public static let jsonb: UInt32 = 3802
    /// Redshift SUPER.
    public static let redshiftSuper: UInt32 = 4000
    /// Redshift VARBYTE.
    public static let redshiftVarbyte: UInt32 = 6551

    public static let integers: Set<UInt32> = [int2, int4, int8, oid]
    public static let temporal: Set<UInt32> = [date, timestamp, timestamptz]
}
