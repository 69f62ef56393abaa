import PostgresClient

/// Redshift: a batch's staging rows — each the schema's columns then `__op` — as text values in one buffer, bound
/// as they are to multi-row INSERTs or written from it as COPY's JSON lines (no String per value).
struct StagedRows: Sendable, TextSink {
    private(set) var values = TextParameters()
    let width: Int
    private var rowStart = 0

    init(width: Int) { self.width = width }

    var count: Int { values.count / width }
    var isEmpty: Bool { values.count == 0 }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) { values.append(bytes) }
    mutating func append(_ byte: UInt8) { values.append(byte) }
    mutating func beginValue() { values.beginValue() }
    mutating func endValue() { values.endValue() }
    mutating func appendNull() { values.appendNull() }

    /// A whole value.
    mutating func append(value text: String) {
        beginValue()
        append(text)
        endValue()
    }

    mutating func endRow() {
        precondition(values.count == rowStart + width, "a staged row has \(values.count - rowStart) values, not \(width)")
        rowStart = values.count
    }

    /// Drops the row being written (a value that did not fit).
    mutating func abandonRow() { values.removeValues(from: rowStart) }

    /// The text bytes of one row's values, NULLs counted as 0.
    func byteCount(ofRow row: Int) -> Int {
        (row * width..<(row + 1) * width).reduce(0) { $0 + values.length(at: $1) }
    }

    /// Copies row `row` of `other` (same width) to the end.
    mutating func appendRow(_ row: Int, of other: StagedRows) {
        for index in row * other.width..<(row + 1) * other.width {
            other.values.withValue(at: index) { bytes in
                if let bytes { beginValue(); append(bytes); endValue() } else { appendNull() }
            }
        }
        endRow()
    }

    /// The parameter range of rows `rows`.
    func parameterRange(_ rows: Range<Int>) -> Range<Int> { rows.lowerBound * width..<rows.upperBound * width }
}
