import BSON
import Foundation
import ShiftCore

/// `state/deadletter/<stream>.jsonl`: rows or events mongoshift could not deliver, one JSON object per line
/// with the key and the reason, so nothing is dropped silently and the stream goes on.
public struct DeadLetterFile: Sendable {
    public let path: String

    public init(stateDirectory: String, stream: String) throws {
        let dir = (stateDirectory as NSString).appendingPathComponent("deadletter")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        path = (dir as NSString).appendingPathComponent(stream.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? String($0) : "_" }.joined() + ".jsonl")
    }

    public struct Entry: Sendable {
        public var key: BSON
        public var reason: String
        public var payload: Document?
        public init(key: BSON, reason: String, payload: Document? = nil) {
            self.key = key
            self.reason = reason
            self.payload = payload
        }
    }

    /// Appends entries and fsyncs, so an entry is never lost once the stream moves past it. The open, write and
    /// fsync block: they run on the dead-letter thread, off Swift's cooperative pool.
    public func append(stream: String, _ entries: [Entry]) async throws {
        guard !entries.isEmpty else { return }
        try await Self.io.run { [path] in try Self.appendLines(entries, stream: stream, to: path) }
    }

    private static let io = IOThread(name: "deadletter")

    private static func appendLines(_ entries: [Entry], stream: String, to path: String) throws {
        var text = ""
        let at = ISODate.format(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) ?? ""
        for entry in entries {
            text += #"{"at": ""# + at + #"", "stream": "#
            ExtendedJSON.writeString(stream, into: &text)
            text += #", "key": "# + ExtendedJSON.relaxed(entry.key) + #", "reason": "#
            ExtendedJSON.writeString(entry.reason, into: &text)
            if let payload = entry.payload, payload.byteCount < 1 << 20 {
                text += #", "document": "# + ExtendedJSON.relaxed(payload)
            }
            text += "}\n"
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ReplicationError(.deadLetter, stream: stream, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        let before = fstat(fd, &info) == 0 ? info.st_size : -1
        // A failed append takes its bytes back (a torn line would make the file unreadable as JSON lines); a full
        // disk is waited out (transient), anything else fails the stream.
        func failed(_ call: String) -> Error {
            let error = FileError.fromErrno(path, call)
            if before >= 0 { _ = ftruncate(fd, before) }
            return error.code == .noSpace ? error : ReplicationError(.deadLetter, stream: stream, "cannot write \(path): \(error.reason)")
        }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failed("write") }
            offset += n
        }
        guard fsync(fd) == 0 else { throw failed("fsync") }
    }

    public func count() -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        return data.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }
}
