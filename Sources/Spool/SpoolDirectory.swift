import Foundation
import ShiftCore
import Changes

/// `state/spool/<stream>/<seq:020>.seg`: where one stream's segments live.
public struct SpoolDirectory: Sendable {
    public let path: String

    public init(root: String, stream: String) throws {
        path = (root as NSString).appendingPathComponent(Self.safeName(stream))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    /// Segment files are finished and written (last frame, fsync, rename) on one thread, and read and decoded on
    /// another, never on Swift's cooperative pool. Process-wide: sealing mostly waits on the disk, reading is one
    /// applier's segment at a time per stream.
    private static let sealing = IOThread(name: "spool-seal")
    private static let reading = IOThread(name: "spool-read")
    /// Removals have their own thread: an applier must not wait behind other streams' seals and their fsyncs.
    private static let removing = IOThread(name: "spool-remove")

    /// Seals `segment` as file `seq` (`SpoolSegmentWriter.seal`) on the spool thread. Returns the file size.
    public func seal(_ segment: SpoolSegmentWriter, seq: Int64, first: StreamPosition?, last: StreamPosition?) async throws -> Int {
        let path = segmentPath(seq)
        return try await Self.sealing.run { try segment.seal(to: path, first: first, last: last) }
    }

    /// Reads and verifies segment `seq` on the spool thread.
    public func read(_ seq: Int64) async throws -> SpoolSegment {
        let path = segmentPath(seq)
        return try await Self.reading.run { try SpoolSegmentReader.read(path: path) }
    }

    public func segmentPath(_ seq: Int64) -> String {
        let digits = String(seq)
        return (path as NSString).appendingPathComponent(String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg")
    }

    /// Sequence numbers of the segment files present (temp files excluded).
    public func sequencesOnDisk() -> [Int64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name in name.hasSuffix(".seg") ? Int64(name.dropLast(4)) : nil }.sorted()
    }

    /// Removes leftovers of interrupted writes and segments the state store does not know (off the pool).
    @discardableResult
    public func removeUnknown(known: Set<Int64>) async -> Int {
        let path = path
        return (try? await Self.removing.run { Self.removeUnknown(in: path, known: known) }) ?? 0
    }

    /// Removes every segment (a stream starting over), off the pool.
    public func removeAll() async {
        _ = try? await Self.removing.run { [self] in for seq in sequencesOnDisk() { try? FileManager.default.removeItem(atPath: segmentPath(seq)) } }
    }

    private static func removeUnknown(in path: String, known: Set<Int64>) -> Int {
        var removed = 0
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names {
            let full = (path as NSString).appendingPathComponent(name)
            if name.hasSuffix(".tmp") || (name.hasSuffix(".seg") && !(Int64(name.dropLast(4)).map(known.contains) ?? false)) {
                try? FileManager.default.removeItem(atPath: full)
                removed += 1
            }
        }
        return removed
    }

    /// Removes an applied (or unrecorded) segment, off the pool: an unlink can wait on the file system.
    public func remove(_ seq: Int64) async {
        let file = segmentPath(seq)
        _ = try? await Self.removing.run { try? FileManager.default.removeItem(atPath: file) }
    }

    public func bytesOnDisk() -> Int {
        sequencesOnDisk().reduce(0) { total, seq in
            let size = (try? FileManager.default.attributesOfItem(atPath: segmentPath(seq))[.size] as? Int) ?? 0
            return total + size
        }
    }

    /// Stream names become directory names: keep them to a safe alphabet.
    static func safeName(_ stream: String) -> String {
        String(stream.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }
}
