import PostgresClient

/// What a watermark column holds, which decides how its poll is bounded and how far back a lookback reaches.
enum WatermarkKind: Sendable, Equatable {
    /// timestamp / timestamptz: microseconds on the source's clock (UTC).
    case time(withTimeZone: Bool)
    /// smallint / integer / bigint: a sequence-like number.
    case integer

    init?(typeOID: UInt32) {
        switch typeOID {
        case PostgresType.timestamp: self = .time(withTimeZone: false)
        case PostgresType.timestamptz: self = .time(withTimeZone: true)
        case _ where PostgresType.integers.contains(typeOID): self = .integer
        default: return nil
        }
    }

    /// The SQL type a bound parameter is cast to, to compare with the column.
    var castType: String {
        switch self {
        case .time(let tz): tz ? "timestamptz" : "timestamp"
        case .integer: "bigint"
        }
    }

    /// A bound's text as the column compares it (UTC made explicit for timestamptz).
    /// A `timestamp` without time zone holds wall-clock time: on PostgreSQL, the server's zone's (`now()` in a
    /// session that kept its default zone); the source clock is read in that zone (`TransactionHorizon`).
    var readsInServerZone: Bool { self == .time(withTimeZone: false) }

    func boundText(_ value: Int64) -> String {
        switch self {
        case .time(let tz): ValueText.timestampMicrosText(value) + (tz ? "+00" : "")
        case .integer: String(value)
        }
    }

    /// A watermark's text as a number (microseconds or the integer); nil when it is not one.
    func value(of text: String) -> Int64? {
        var copy = text
        return copy.withUTF8 { bytes in
            switch self {
            case .time: TextValueDecoder.parseTimestampMicros(bytes)
            case .integer: TextValueDecoder.parseInt(bytes)
            }
        }
    }
}
