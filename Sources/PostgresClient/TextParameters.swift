/// Bound text parameters held in one buffer — each value's bytes then a NUL (what libpq reads), or NULL — so a
/// many-row INSERT binds thousands of values without a String or an allocation per value.
public struct TextParameters: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Per value: the range of its bytes in `bytes` (without the NUL), or nil for NULL.
    private var starts: [Int] = []
    private var ends: [Int] = []

    public init() {}

    public init(_ values: [String?]) {
        for value in values {
            if let value {
                beginValue()
                var value = value
                value.withUTF8 { append($0) }
                endValue()
            } else {
                appendNull()
            }
        }
    }

    public var count: Int { starts.count }

    public mutating func appendNull() {
        starts.append(-1)
        ends.append(-1)
    }

    /// Starts a value; its bytes follow through `append`, then `endValue`.
    public mutating func beginValue() {
        starts.append(bytes.count)
    }

    public mutating func append(_ utf8: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: utf8) }
    public mutating func append(_ byte: UInt8) { bytes.append(byte) }

    public mutating func endValue() {
        ends.append(bytes.count)
        bytes.append(0)
    }

    /// Drops values from `index` on (a row abandoned half-written).
    public mutating func removeValues(from index: Int) {
        guard index < starts.count else { return }
        if let first = starts[index...].first(where: { $0 >= 0 }) { bytes.removeSubrange(first...) }
        starts.removeSubrange(index...)
        ends.removeSubrange(min(index, ends.count)...)
    }

    /// The byte length of value `index` (0 for NULL).
    public func length(at index: Int) -> Int { starts[index] < 0 ? 0 : ends[index] - starts[index] }

    /// Calls `body` with value `index`'s bytes (nil for NULL).
    public func withValue<R>(at index: Int, _ body: (UnsafeBufferPointer<UInt8>?) throws -> R) rethrows -> R {
        guard starts[index] >= 0 else { return try body(nil) }
        return try bytes.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[starts[index]..<ends[index]])) }
    }

    /// libpq's `paramValues` for the values in `range`, valid during `body`.
    func withCPointers<R>(_ range: Range<Int>, _ body: (UnsafePointer<UnsafePointer<CChar>?>?) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            var values: [UnsafePointer<CChar>?] = []
            values.reserveCapacity(range.count)
            for start in starts[range] { values.append(start >= 0 ? base.map { UnsafePointer($0 + start) } : nil) }
            return try values.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}
