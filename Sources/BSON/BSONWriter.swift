/// Writes BSON straight into caller-owned memory, one pass, no intermediate values (the extract hot path,
/// docs/ARCHITECTURE.md "Spool"). It never writes past `capacity`: once the output does not fit it keeps counting,
/// so after a pass `count` is the size needed and the caller retries with a buffer that large.
///
/// Valid only inside the closure that lent the memory (`BSONWriter.encode`).
public struct BSONWriter {
    @usableFromInline let base: UnsafeMutablePointer<UInt8>
    @usableFromInline let capacity: Int
    @usableFromInline var written = 0
    /// Bytes written — or needed, when more than `capacity`.
    @inlinable public var count: Int { written }

    @inlinable init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inlinable public var fits: Bool { count <= capacity }

    /// Runs `body` over `scratch` (grown and re-run when the output did not fit); nil when `body` returned false.
    /// The bytes are `scratch[0..<n]`.
    @inlinable
    public static func encode(into scratch: inout [UInt8], _ body: (inout BSONWriter) -> Bool) -> Int? {
        while true {
            let (ok, needed) = scratch.withUnsafeMutableBufferPointer { buffer -> (Bool, Int) in
                var writer = BSONWriter(base: buffer.baseAddress!, capacity: buffer.count)
                let ok = body(&writer)
                return (ok, writer.count)
            }
            if !ok { return nil }
            if needed <= scratch.count { return needed }
            scratch = [UInt8](repeating: 0, count: max(needed, scratch.count * 2))
        }
    }

    // MARK: raw bytes

    @inlinable @inline(__always)
    public mutating func byte(_ b: UInt8) {
        if count < capacity { base[count] = b }
        written &+= 1
    }

    @inlinable @inline(__always)
    public mutating func bytes(_ source: UnsafeRawBufferPointer) {
        let n = source.count
        if n > 0, count + n <= capacity { (base + count).update(from: source.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n) }
        written &+= n
    }

    @inlinable @inline(__always)
    public mutating func bytes(_ source: UnsafeBufferPointer<UInt8>) { bytes(UnsafeRawBufferPointer(source)) }

    @inlinable @inline(__always)
    public mutating func littleEndian<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        if count + size <= capacity { UnsafeMutableRawPointer(base + count).storeBytes(of: value.littleEndian, as: T.self) }
        written &+= size
    }

    /// Copies `length` bytes written earlier at `start` to the end (the key written once as `k` and again as `_id`).
    @inlinable
    public mutating func repeatBytes(from start: Int, length: Int) {
        if count + length <= capacity { (base + count).update(from: base + start, count: length) }
        written &+= length
    }

    /// Forgets what was written after `mark` (a value the in-place path gave up on).
    @inlinable
    public mutating func truncate(to mark: Int) {
        written = mark
    }

    /// The byte at `offset` (already written) set to `value`: a type byte known only after its value.
    @inlinable
    public mutating func patch(_ offset: Int, _ value: UInt8) {
        if offset < capacity { base[offset] = value }
    }

    // MARK: structure

    /// Starts a document or array; pass the result to `endDocument`.
    @inlinable
    public mutating func beginDocument() -> Int {
        let start = count
        littleEndian(UInt32(0))
        return start
    }

    @inlinable
    public mutating func endDocument(_ start: Int) {
        byte(0)
        if count <= capacity { UnsafeMutableRawPointer(base + start).storeBytes(of: UInt32(count - start).littleEndian, as: UInt32.self) }
    }

    /// An element header: the type byte and the key as a C string. `key` holds the key's bytes followed by its NUL.
    @inlinable @inline(__always)
    public mutating func element(_ type: UInt8, key: UnsafeRawBufferPointer) {
        byte(type)
        bytes(key)
    }

    /// An element header for a short literal key (`"o"`, `"k"`, array indexes).
    @inlinable
    public mutating func element(_ type: UInt8, _ key: StaticString) {
        byte(type)
        bytes(UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        byte(0)
    }

    /// An array index key (`"0"`, `"1"`, … as C strings) after the type byte.
    @inlinable
    public mutating func element(_ type: UInt8, index: Int) {
        byte(type)
        var divisor = 1
        while divisor <= index / 10 { divisor *= 10 }
        while divisor > 0 {
            byte(UInt8(truncatingIfNeeded: 48 + index / divisor % 10))
            divisor /= 10
        }
        byte(0)
    }

    // MARK: values

    /// A string value: length (with its NUL), UTF-8 bytes, NUL. The caller vouches for the UTF-8.
    @inlinable
    public mutating func stringValue(_ utf8: UnsafeBufferPointer<UInt8>) {
        littleEndian(UInt32(utf8.count + 1))
        bytes(utf8)
        byte(0)
    }

    /// Any value, through the general encoder (rare paths: values the in-place decoders hand back).
    public mutating func value(_ value: BSON) {
        var encoded: [UInt8] = []
        BSONEncoder.appendValue(&encoded, value)
        encoded.withUnsafeBytes { bytes($0) }
    }

    /// A key as stored: its UTF-8 without NUL bytes (they would end the C string early), then the terminator.
    public static func keyBytes(_ key: String) -> [UInt8] {
        var out: [UInt8] = []
        BSONEncoder.appendCString(&out, key)
        return out
    }
}
