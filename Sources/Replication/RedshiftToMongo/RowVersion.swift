import BSON
import PostgresClient

/// A row's version, `_mongoshift.v`, in one encoding for every watermark type so that versions always compare
/// (MongoDB compares within one type bracket only: a date never passes `$lte` against a number): an int64 —
/// microseconds since the epoch for timestamp, timestamptz and date watermarks (exact), the value itself for
/// integer watermarks. A row without a watermark value (a NULL, or a table without a watermark column) has the
/// lowest version: any versioned write replaces it, and it never replaces a versioned document.
enum RowVersion {
    static let unversioned = Int64.min

    /// How a watermark column's text becomes a version, decided once per column (not per row).
    enum Kind: Equatable {
        /// date, timestamp, timestamptz: microseconds since the epoch.
        case microseconds
        /// smallint, integer, bigint: the value.
        case integer

        init?(typeOID: UInt32) {
            if PostgresType.integers.contains(typeOID) { self = .integer }
            else if PostgresType.temporal.contains(typeOID) { self = .microseconds }
            else { return nil }
        }

        func version(of text: UnsafeBufferPointer<UInt8>) -> Int64? {
            switch self {
            case .integer: TextValueDecoder.parseInt(text)
            case .microseconds: TextValueDecoder.parseTimestampMicros(text)
            }
        }
    }

    /// The version of a watermark value, from the source's text.
    static func of(_ text: UnsafeBufferPointer<UInt8>, type: UInt32) -> Int64? {
        Kind(typeOID: type)?.version(of: text)
    }
}
