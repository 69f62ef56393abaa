import Foundation

/// A file-system failure of a durable write: which file, and why. A full disk has its own code, so callers can
/// wait for space instead of failing.
public struct FileError: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public enum Code: Sendable, Equatable {
        case io
        /// ENOSPC / EDQUOT.
        case noSpace
        /// ENOENT: no such file.
        case missing
    }
    public var code: Code
    public var path: String
    public var reason: String
    public init(code: Code, path: String, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }

    /// A full disk is waited out (the applier frees space as it drains the spool); anything else is not.
    public var isTransient: Bool { code == .noSpace }

    /// The error for the current `errno` after `call` failed on `path`; a full disk gets its own code.
    public static func fromErrno(_ path: String, _ call: String) -> FileError {
        let code = errno
        let kind: Code = code == ENOSPC || code == EDQUOT ? .noSpace : code == ENOENT ? .missing : .io
        return FileError(code: kind, path: path, reason: "\(call): \(String(cString: strerror(code)))")
    }
}

/// Crash-safe file replacement.
public enum DurableFile {
    /// A whole file's bytes, read straight into the array (no intermediate `Data`). Nil when it cannot be opened
    /// or read.
    public static func contents(of path: String) -> [UInt8]? {
        try? read(path)
    }

    /// `contents(of:)` that says why it failed (`FileError.isMissing`: there is no such file).
    public static func read(_ path: String) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.fromErrno(path, "open") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError.fromErrno(path, "fstat") }
        let size = Int(info.st_size)
        var failure: FileError?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            while count < size {
                let n = Foundation.read(fd, buffer.baseAddress! + count, size - count)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failure = FileError.fromErrno(path, "read"); return }
                if n == 0 { failure = FileError(code: .io, path: path, reason: "read: the file ended at \(count) of \(size) bytes"); return }
                count += n
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Writes `bytes` to `path.tmp`, fsyncs it, renames it over `path`, fsyncs the directory.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(parts: [bytes], to: path)
    }

    /// `write` of the parts one after the other (a file image never concatenated in memory).
    public static func write(parts: [[UInt8]], to path: String) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure(tmp, "open") }
        for bytes in parts {
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let error = failure(tmp, "write")
                    close(fd)
                    unlink(tmp)
                    throw error
                }
                offset += n
            }
        }
        if fsync(fd) != 0 {
            let error = failure(tmp, "fsync")
            close(fd)
            unlink(tmp)
            throw error
        }
        close(fd)
        CrashPoint.hit(CrashPoint.spoolBeforeRename)
        guard rename(tmp, path) == 0 else {
            let error = failure(path, "rename")
            unlink(tmp)
            throw error
        }
        try syncDirectory(of: path)
    }

    private static func failure(_ path: String, _ call: String) -> FileError { FileError.fromErrno(path, call) }

    public static func syncDirectory(of path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(code: .io, path: dir, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw FileError(code: .io, path: dir, reason: "fsync: \(String(cString: strerror(errno)))") }
    }
}
