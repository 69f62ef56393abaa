import Zstd
import Foundation
import ShiftCore
import BSON
import Changes
import Synchronization

/// The header of a spool segment file (docs/ARCHITECTURE.md, "Spool").
///
/// Layout, little-endian: `MSPL` · u16 version · u16 flags · u32 records · u64 raw length · u64 payload length ·
/// u16 stream-name length + UTF-8 · u32 + BSON first position · u32 + BSON last position · zstd payload (frames
/// of about 1 MiB input each, every frame declaring its size; none for an empty segment) ·
/// u32 CRC-32C of everything before it.
public struct SpoolSegmentHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("MSPL".utf8)
    /// 2: the payload is a run of frames (or none); 1: one frame. Both are read; an older binary refuses 2 as corrupt
    /// and re-extracts the range (docs/ARCHITECTURE.md, "Spool").
    public static let version: UInt16 = 2
    static let readable: ClosedRange<UInt16> = 1...2

    public var stream: String
    /// Position before the first change (nil: the start) and after the last, in the position codec's form.
    public var firstPosition: StreamPosition?
    public var lastPosition: StreamPosition?
    public var recordCount: Int
    public var rawLength: Int
}

/// A decoded, verified segment.
public struct SpoolSegment: Sendable {
    public var header: SpoolSegmentHeader
    public var changes: [Change]
}

/// Accumulates changes and seals them into a durable segment file. Records are compressed as they come, a
/// frame per `frameBytes` of input, so a segment in the making holds one frame's input plus the compressed bytes
/// (about a fifth of the page) — memory does not grow with `batch_bytes` (docs/ARCHITECTURE.md, "Spool").
public struct SpoolSegmentWriter: Sendable {
    /// Input per zstd frame: large enough for level 1's window, small enough to keep a copier lean.
    public static let frameBytes = 1 << 20

    public let stream: String
    private var staged: [UInt8] = []
    private var compressed: [UInt8] = []
    private var compressedRaw = 0
    /// The writer's compression context (created with its first frame; sealing a copy uses it after the writer
    /// has moved on — a new page's writer has its own).
    private var compressor: ZstdCompressor?
    /// A compression failure while appending, reported when sealing.
    private var failure: String?
    public private(set) var count = 0

    /// `reserveBytes`: the expected page size (only a frame's worth is held uncompressed).
    public init(stream: String, reserveBytes: Int = 0) {
        self.stream = stream
        // Room for the record that crosses the frame size too (growing then would copy the whole frame).
        staged.reserveCapacity(reserveBytes >= Self.frameBytes ? Self.frameBytes + (64 << 10) : reserveBytes)
        self.reserveBytes = reserveBytes
    }

    private let reserveBytes: Int

    /// Uncompressed bytes appended so far.
    public var byteCount: Int { compressedRaw + staged.count }

    public mutating func append(_ change: Change) {
        append(record: change.record)
    }

    /// Appends an already-encoded change record.
    public mutating func append(record: Document) {
        record.bytes.withUnsafeBytes { append(recordBytes: $0) }
    }

    /// Appends a record written in place (`BSONWriter`): its bytes are one complete BSON document.
    public mutating func append(recordBytes: UnsafeRawBufferPointer) {
        staged.append(contentsOf: recordBytes)
        count += 1
        if staged.count >= Self.frameBytes { compressStaged() }
    }

    private mutating func compressStaged() {
        guard failure == nil else { return }
        do {
            if compressor == nil {
                compressor = ZstdCompressor()
                // The page's compressed size, guessed at a quarter of its input (each regrowth copies it all).
                compressed.reserveCapacity(max(reserveBytes / 4, 2 * staged.count))
            }
            try staged.withUnsafeBytes { try compressor!.compress($0, appendingTo: &compressed) }
            compressedRaw += staged.count
            staged.removeAll(keepingCapacity: true)
        } catch {
            failure = "\(error)"
        }
    }

    public mutating func reset() {
        staged.removeAll(keepingCapacity: true)
        compressed.removeAll(keepingCapacity: true)
        compressedRaw = 0
        failure = nil
        count = 0
    }

    /// Compresses and writes the segment: temp file, fsync, rename, directory fsync. After this returns the
    /// segment survives a crash or power loss. Returns the file size.
    @discardableResult
    public func seal(to path: String, first: StreamPosition?, last: StreamPosition?) throws -> Int {
        let parts = try fileParts(first: first, last: last)
        do {
            try DurableFile.write(parts: parts, to: path)
        } catch let error as FileError {
            throw SpoolError(code: error.code == .noSpace ? .noSpace : .io, path: error.path, reason: error.reason)
        }
        return parts.reduce(0) { $0 + $1.count }
    }

    /// The complete file image (exposed for tests and the fuzz corpus). Does not change the writer: sealing again
    /// (a retry after a full disk) writes the same bytes.
    public func encode(first: StreamPosition?, last: StreamPosition?) throws -> [UInt8] {
        try fileParts(first: first, last: last).flatMap { $0 }
    }

    /// The file image in the order written: header, the compressed frames, the last frame, the checksum — the
    /// frames are not copied into one buffer.
    private func fileParts(first: StreamPosition?, last: StreamPosition?) throws -> [[UInt8]] {
        if let failure { throw SpoolError(code: .compression, path: stream, reason: failure) }
        var tail: [UInt8] = []
        if !staged.isEmpty {
            do { try staged.withUnsafeBytes { try (compressor ?? ZstdCompressor()).compress($0, appendingTo: &tail) } } catch {
                throw SpoolError(code: .compression, path: stream, reason: "\(error)")
            }
        }
        let payloadCount = compressed.count + tail.count
        var header: [UInt8] = []
        header.reserveCapacity(256)
        header += SpoolSegmentHeader.magic
        append(&header, SpoolSegmentHeader.version)
        append(&header, UInt16(0))
        append(&header, UInt32(count))
        append(&header, UInt64(byteCount))
        append(&header, UInt64(payloadCount))
        let name = Array(stream.utf8)
        append(&header, UInt16(name.count))
        header += name
        for position in [StreamPosition.encode(first), StreamPosition.encode(last)] {
            append(&header, UInt32(position.byteCount))
            header += position.bytes
        }
        var crc = CRC32C.checksum(header)
        crc = compressed.withUnsafeBytes { CRC32C.checksum($0, seed: crc) }
        crc = tail.withUnsafeBytes { CRC32C.checksum($0, seed: crc) }
        var trailer: [UInt8] = []
        append(&trailer, crc)
        return [header, compressed, tail, trailer]
    }

    private func append<T: FixedWidthInteger>(_ out: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }
}

/// Reads and verifies segment files. Any defect is a `.corrupt` error: a segment is used whole or not at all. A
/// file that is gone is `.corrupt` too (its range must be extracted again); one that cannot be read now (too many
/// open files, an I/O error) is `.io`, which is retried — never a reason to forget the segment.
public enum SpoolSegmentReader {
    public static func read(path: String) throws -> SpoolSegment {
        let bytes: [UInt8]
        do {
            bytes = try DurableFile.read(path)
        } catch {
            throw SpoolError(code: error.code == .missing ? .corrupt : .io, path: path, reason: error.reason)
        }
        return try decode(bytes, path: path)
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> SpoolSegment {
        func corrupt(_ reason: String) -> SpoolError { SpoolError(code: .corrupt, path: path, reason: reason) }
        guard bytes.count >= 4 + 2 + 2 + 4 + 8 + 8 + 2 + 4 + 4 + 4 else { throw corrupt("file too short (\(bytes.count) bytes)") }
        guard Array(bytes[0..<4]) == SpoolSegmentHeader.magic else { throw corrupt("bad magic") }
        let stored: UInt32 = read(bytes, bytes.count - 4)
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<(bytes.count - 4)])) }
        guard stored == computed else { throw corrupt("checksum mismatch (torn write or flipped bits)") }
        var p = 4
        let version: UInt16 = read(bytes, p); p += 4
        guard SpoolSegmentHeader.readable.contains(version) else { throw corrupt("unsupported version \(version)") }
        let records = Int(read(bytes, p) as UInt32); p += 4
        // (Lengths from a damaged header can be anything: never trap converting or adding them.)
        guard let rawLength = Int(exactly: read(bytes, p) as UInt64), rawLength <= 1 << 31 else { throw corrupt("implausible raw length") }
        p += 8
        guard let payloadLength = Int(exactly: read(bytes, p) as UInt64), payloadLength <= bytes.count else { throw corrupt("payload length overruns file") }
        p += 8
        let nameLength = Int(read(bytes, p) as UInt16); p += 2
        guard p + nameLength <= bytes.count - 4 else { throw corrupt("header overruns file") }
        let stream = String(decoding: bytes[p..<(p + nameLength)], as: UTF8.self); p += nameLength
        func position() throws -> StreamPosition? {
            guard p + 4 <= bytes.count - 4 else { throw corrupt("header overruns file") }
            let n = Int(read(bytes, p) as UInt32); p += 4
            guard n >= 5, p + n <= bytes.count - 4 else { throw corrupt("bad position length") }
            defer { p += n }
            do { return try StreamPosition.decode(try Document(bytes: Array(bytes[p..<(p + n)]))) } catch { throw corrupt("bad position: \(error)") }
        }
        let first = try position()
        let last = try position()
        guard p + payloadLength == bytes.count - 4 else { throw corrupt("payload length mismatch") }
        // The frames state their content sizes: check them before allocating what the header claims.
        let frameSize = bytes.withUnsafeBytes { Zstd.contentSize(ofFrames: UnsafeRawBufferPointer(rebasing: $0[p..<(p + payloadLength)])) }
        guard frameSize == UInt64(rawLength) else { throw corrupt("raw length \(rawLength) does not match the payload") }
        // Frame by frame: a record may continue into the next frame, so the unparsed tail is carried over.
        var changes: [Change] = []
        changes.reserveCapacity(min(records, rawLength / 5))  // a record is at least 5 bytes, whatever the header says
        let scratch = DecodeScratch.take()
        var pending: [UInt8] = []
        swap(&pending, &scratch.pending)
        defer {
            pending.removeAll(keepingCapacity: true)
            swap(&pending, &scratch.pending)
            DecodeScratch.give(scratch)
        }
        do {
            try bytes.withUnsafeBytes { file in
                try Zstd.forEachFrame(UnsafeRawBufferPointer(rebasing: file[p..<(p + payloadLength)]), buffer: &scratch.frame) { content in
                    pending.append(contentsOf: content)
                    var q = 0
                    while q + 4 <= pending.count {
                        let n = Int(read(pending, q) as UInt32)
                        guard n >= 5 else { throw corrupt("bad record length") }
                        guard q + n <= pending.count else { break }
                        do { changes.append(try Change(recordBytes: pending[q..<(q + n)])) } catch { throw corrupt("record \(changes.count): \(error)") }
                        q += n
                    }
                    pending.removeFirst(q)
                }
            }
        } catch let error as SpoolError {
            throw error
        } catch {
            throw corrupt("\(error)")
        }
        guard pending.isEmpty else { throw corrupt("truncated record") }
        guard changes.count == records else { throw corrupt("\(changes.count) records, header says \(records)") }
        let header = SpoolSegmentHeader(stream: stream, firstPosition: first, lastPosition: last,
                                        recordCount: records, rawLength: rawLength)
        return SpoolSegment(header: header, changes: changes)
    }

    /// A decoder's frame buffer and carried-over bytes (each about a frame, 1 MiB): kept for the next segment, at
    /// most two, so reading segment after segment does not map and fault them in anew. Buffers a huge record grew
    /// are not kept.
    final class DecodeScratch: @unchecked Sendable {
        // @unchecked: used by one decode at a time; the pool hands it out under its lock.
        var frame = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 16)
        var pending: [UInt8] = []
        deinit { frame.deallocate() }

        private static let pool = Mutex<[DecodeScratch]>([])
        private static let keptBytes = 4 * SpoolSegmentWriter.frameBytes
        static func take() -> DecodeScratch { pool.withLock { $0.popLast() } ?? DecodeScratch() }
        static func give(_ scratch: DecodeScratch) {
            guard scratch.frame.count <= keptBytes, scratch.pending.capacity <= keptBytes else { return }
            pool.withLock { if $0.count < 2 { $0.append(scratch) } }
        }
    }

    private static func read<T: FixedWidthInteger>(_ bytes: [UInt8], _ at: Int) -> T {
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<MemoryLayout<T>.size { raw[i] = bytes[at + i] }
        }
        return T(littleEndian: value)
    }
}
