internal import CZstd
import Foundation
import ShiftCore

/// zstd from Debian's libzstd: whole buffers (spool segments) and streams (COPY and UNLOAD files), so only this
/// module touches the C API.
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { "zstd: \(reason)" }
}

public enum Zstd {
    /// The total content size a run of frames declares (nil when any frame is malformed or does not say).
    public static func contentSize(ofFrames frames: UnsafeRawBufferPointer) -> UInt64? {
        var total: UInt64 = 0
        var at = 0
        while at < frames.count {
            let rest = UnsafeRawBufferPointer(rebasing: frames[at...])
            let size = ZSTD_getFrameContentSize(rest.baseAddress, rest.count)
            if size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR { return nil }
            let length = ZSTD_findFrameCompressedSize(rest.baseAddress, rest.count)
            if ZSTD_isError(length) != 0 || length == 0 { return nil }
            let (sum, overflow) = total.addingReportingOverflow(size)
            if overflow { return nil }
            total = sum
            at += length
        }
        return total
    }

    /// Decompresses a run of frames one at a time into one reused buffer, handing each frame's content to `body`
    /// (valid during the call): memory is the largest frame, not the whole. Every frame must declare its size
    /// (`contentSize(ofFrames:)` checked that) and decompress to exactly it.
    public static func forEachFrame(_ frames: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 16)
        defer { buffer.deallocate() }
        try forEachFrame(frames, buffer: &buffer, body)
    }

    /// `forEachFrame` into the caller's buffer (allocated with alignment 16), replaced by a larger one when a frame
    /// needs it: readers of many segments keep one instead of mapping and faulting in a new one per segment.
    public static func forEachFrame(_ frames: UnsafeRawBufferPointer, buffer: inout UnsafeMutableRawBufferPointer,
                                    _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var at = 0
        while at < frames.count {
            let rest = UnsafeRawBufferPointer(rebasing: frames[at...])
            let length = ZSTD_findFrameCompressedSize(rest.baseAddress, rest.count)
            let size = ZSTD_getFrameContentSize(rest.baseAddress, rest.count)
            guard ZSTD_isError(length) == 0, length > 0, size != ZSTD_CONTENTSIZE_UNKNOWN, size != ZSTD_CONTENTSIZE_ERROR,
                  let content = Int(exactly: size) else { throw ZstdError(reason: "malformed frame at byte \(at)") }
            if buffer.count < content {
                buffer.deallocate()
                buffer = .allocate(byteCount: content, alignment: 16)
            }
            let got = ZSTD_decompress(buffer.baseAddress, buffer.count, rest.baseAddress, length)
            if ZSTD_isError(got) != 0 { throw ZstdError(reason: String(cString: ZSTD_getErrorName(got))) }
            guard got == content else { throw ZstdError(reason: "frame decompressed to \(got) bytes, declared \(content)") }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            at += length
        }
    }
}

/// A compression context and output buffer reused frame after frame (one per call would allocate and fault in
/// both for every frame). The instance owns them; one user at a time.
public final class ZstdCompressor: @unchecked Sendable {
    // @unchecked: a spool segment writer's own; never compressing on two threads at once.
    private let context: OpaquePointer
    private let level: Int32
    private var output = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(level: Int32 = 1) {
        context = ZSTD_createCCtx()
        self.level = level
    }

    deinit {
        ZSTD_freeCCtx(context)
        output.deallocate()
    }

    /// Compresses `raw` as one frame appended to `out`.
    public func compress(_ raw: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) throws {
        let bound = ZSTD_compressBound(raw.count)
        if output.count < bound {
            output.deallocate()
            output = .allocate(byteCount: bound, alignment: 16)
        }
        let written = ZSTD_compressCCtx(context, output.baseAddress, bound, raw.baseAddress, raw.count, level)
        if ZSTD_isError(written) != 0 { throw ZstdError(reason: String(cString: ZSTD_getErrorName(written))) }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: output[0..<written]))
    }
}

/// Compresses a stream into a file as it is written; memory stays at one buffer. The instance owns the context.
///
/// File failures are `FileError`s: a full disk (`.noSpace`) is transient, so the caller's retry waits for space.
public final class ZstdFileWriter {
    private let context: OpaquePointer
    private let path: String
    private var fd: Int32
    private var output: [UInt8]
    public private(set) var compressedBytes: Int64 = 0
    public private(set) var rawBytes: Int64 = 0

    public init(path: String, level: Int32 = 3) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError.fromErrno(path, "open") }
        self.path = path
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
    }

    deinit {
        ZSTD_freeCCtx(context)
        if fd >= 0 { close(fd) }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        rawBytes += Int64(bytes.count)
        try pump(bytes, end: false)
    }

    /// Ends the frame, fsyncs and closes the file.
    public func finish() throws {
        try pump(UnsafeRawBufferPointer(start: nil, count: 0), end: true)
        guard fsync(fd) == 0 else { throw FileError.fromErrno(path, "fsync") }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw FileError.fromErrno(path, "close") }
    }

    private func pump(_ bytes: UnsafeRawBufferPointer, end: Bool) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while true {
            let (remaining, produced): (Int, Int) = try output.withUnsafeMutableBytes { o in
                var out = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let r = ZSTD_compressStream2(context, &out, &input, end ? ZSTD_e_end : ZSTD_e_continue)
                if ZSTD_isError(r) != 0 { throw ZstdError(reason: String(cString: ZSTD_getErrorName(r))) }
                return (r, out.pos)
            }
            if produced > 0 {
                try output.withUnsafeBytes { o in
                    var offset = 0
                    while offset < produced {
                        let n = Foundation.write(fd, o.baseAddress! + offset, produced - offset)
                        if n < 0 && errno == EINTR { continue }
                        guard n > 0 else { throw FileError.fromErrno(path, "write") }
                        offset += n
                    }
                }
                compressedBytes += Int64(produced)
            }
            if end ? remaining == 0 : input.pos == input.size { return }
        }
    }
}

/// Decompresses a file (one or more frames) chunk by chunk; memory stays at one buffer each way.
/// `@unchecked Sendable`: it may be handed to an I/O thread, and is used by one thread at a time.
public final class ZstdFileReader: @unchecked Sendable {
    private let context: OpaquePointer
    private let handle: FileHandle
    private var input: [UInt8] = []
    private var inputPos = 0
    private var output: [UInt8]
    private var finished = false

    public init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ZstdError(reason: "cannot read \(path)") }
        self.handle = handle
        context = ZSTD_createDCtx()
        output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
    }

    deinit { ZSTD_freeDCtx(context); try? handle.close() }

    /// The next decompressed bytes; nil at the end of the file.
    public func next() throws -> [UInt8]? {
        while true {
            if inputPos == input.count {
                if finished { return nil }
                let chunk = try handle.read(upToCount: ZSTD_DStreamInSize()) ?? Data()
                if chunk.isEmpty {
                    finished = true
                    return nil
                }
                input = [UInt8](chunk)
                inputPos = 0
            }
            let produced: Int = try input.withUnsafeBytes { i in
                try output.withUnsafeMutableBytes { o in
                    var inBuf = ZSTD_inBuffer(src: i.baseAddress, size: i.count, pos: inputPos)
                    var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                    let r = ZSTD_decompressStream(context, &outBuf, &inBuf)
                    if ZSTD_isError(r) != 0 { throw ZstdError(reason: String(cString: ZSTD_getErrorName(r))) }
                    inputPos = inBuf.pos
                    return outBuf.pos
                }
            }
            if produced > 0 { return Array(output[0..<produced]) }
        }
    }
}
