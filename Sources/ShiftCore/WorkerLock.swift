import Foundation

/// One process per local directory (docs/CONFIG.md, `local_dir`): the commands that write state and spool
/// (`run`, `snapshot`, `reset`) hold an exclusive `flock` on `<dir>/lock` while they live. The kernel drops the lock
/// when the process ends, however it ends (`kill -9` included), so a crash never leaves it behind. Leases cannot
/// do this: a local store's worker is the directory, and two processes in it are the same worker to each other.
public final class WorkerLock: Sendable {
    public struct Held: Error, CustomStringConvertible, Sendable {
        public var directory: String
        /// What the holder wrote: its pid and command (empty if it had not yet).
        public var holder: String
        public var description: String {
            "\(directory) is in use by another mongoshift process\(holder.isEmpty ? "" : " (\(holder))"): "
                + "one process per state directory / local_dir — stop it first, or give this one its own local_dir"
        }
    }

    private let fd: Int32

    /// Takes the lock without waiting; throws `Held` naming the holder, or `FileError` if the file cannot be made.
    public static func acquire(directory: String, command: String) throws -> WorkerLock {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = (directory as NSString).appendingPathComponent("lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(code: .io, path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = DurableFile.contents(of: path).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
            close(fd)
            if reason == EWOULDBLOCK { throw Held(directory: directory, holder: holder) }
            throw FileError(code: .io, path: path, reason: String(cString: strerror(reason)))
        }
        // Who holds it, for the next one's message (not a lock by itself: the flock is).
        let note = Array("pid \(getpid()), mongoshift \(command)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = note.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return WorkerLock(fd: fd)
    }

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }
}
