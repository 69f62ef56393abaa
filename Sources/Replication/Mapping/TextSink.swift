/// Where `ValueText` writes a value's text: the bytes of a bound parameter (`PlainText`) or a COPY text stream,
/// escaped as it is written (`CopyText`) — so the load path builds no String per value.
public protocol TextSink {
    /// Bytes of the value's text, as UTF-8.
    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>)
    mutating func append(_ byte: UInt8)
}

extension TextSink {
    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    mutating func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A signed integer in decimal.
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { buffer -> Int in
            var n = 0
            repeat {
                buffer[23 - n] = UInt8(truncatingIfNeeded: 48 + magnitude % 10)
                magnitude /= 10
                n += 1
            } while magnitude > 0
            return n
        }
        withUnsafeBytes(of: digits) { buffer in
            append(UnsafeBufferPointer(rebasing: buffer.bindMemory(to: UInt8.self)[(24 - count)...]))
        }
    }

    /// A non-negative number with leading zeros up to `width` digits.
    mutating func appendPadded(_ value: Int, width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 1 && divisor > value { append(UInt8(ascii: "0")); divisor /= 10 }
        appendDecimal(Int64(value))
    }

    mutating func appendHex<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        let digits: StaticString = "0123456789abcdef"
        let table = digits.utf8Start
        for byte in bytes {
            append(table[Int(byte >> 4)])
            append(table[Int(byte & 0x0F)])
        }
    }

    /// UTF-8 text as a JSON string: quotes, backslash and control characters escaped, everything else as is.
    mutating func appendJSONString(_ utf8: UnsafeBufferPointer<UInt8>) {
        append(UInt8(ascii: "\""))
        var start = 0
        for i in 0..<utf8.count {
            let byte = utf8[i]
            guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
            append(UnsafeBufferPointer(rebasing: utf8[start..<i]))
            append(UInt8(ascii: "\\"))
            switch byte {
            case 0x22, 0x5C: append(byte)
            case 0x0A: append(UInt8(ascii: "n"))
            case 0x0D: append(UInt8(ascii: "r"))
            case 0x09: append(UInt8(ascii: "t"))
            default:
                append("u00" as StaticString)
                appendHex(CollectionOfOne(byte))
            }
            start = i + 1
        }
        append(UnsafeBufferPointer(rebasing: utf8[start...]))
        append(UInt8(ascii: "\""))
    }

    mutating func appendJSONString(_ text: String) {
        var text = text
        text.withUTF8 { appendJSONString($0) }
    }
}

/// A value's text as plain bytes (a bound parameter).
public struct PlainText: TextSink {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes.append(contentsOf: bytes) }
    public mutating func append(_ byte: UInt8) { bytes.append(byte) }
}

/// PostgreSQL COPY text format being written: tab-separated, `\N` for NULL, backslash, newline, carriage return
/// and tab escaped, one row per line.
public struct CopyText: TextSink {
    public private(set) var bytes: [UInt8] = []
    public private(set) var rows = 0
    private var rowStart = 0
    private var columnsInRow = 0

    public init(reservingCapacity capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public mutating func append(_ text: UnsafeBufferPointer<UInt8>) {
        // Runs without special bytes are copied whole.
        var start = 0
        for i in 0..<text.count {
            let byte = text[i]
            guard byte == 0x5C || byte == 0x0A || byte == 0x0D || byte == 0x09 else { continue }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[start..<i]))
            append(byte)
            start = i + 1
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[start...]))
    }

    @inline(__always)
    public mutating func append(_ byte: UInt8) {
        switch byte {
        case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
        case 0x0A: bytes.append(0x5C); bytes.append(UInt8(ascii: "n"))
        case 0x0D: bytes.append(0x5C); bytes.append(UInt8(ascii: "r"))
        case 0x09: bytes.append(0x5C); bytes.append(UInt8(ascii: "t"))
        default: bytes.append(byte)
        }
    }

    /// Starts the next column of the current row (the separator before all but the first).
    public mutating func nextColumn() {
        if columnsInRow > 0 { bytes.append(0x09) }
        columnsInRow += 1
    }

    public mutating func appendNull() {
        bytes.append(0x5C)
        bytes.append(UInt8(ascii: "N"))
    }

    public mutating func endRow() {
        bytes.append(0x0A)
        rows += 1
        rowStart = bytes.count
        columnsInRow = 0
    }

    /// Drops the row being written (a value that did not fit).
    public mutating func abandonRow() {
        bytes.removeSubrange(rowStart...)
        columnsInRow = 0
    }
}
