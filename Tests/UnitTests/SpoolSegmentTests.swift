import Changes
import BSON
import Foundation
import MongoClient
import Spool
import XCTest

final class SpoolSegmentTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "spooltest-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func makeSegment(count: Int = 500) throws -> (String, [Change]) {
        var writer = SpoolSegmentWriter(stream: "orders")
        var changes: [Change] = []
        for i in 0..<count {
            let change = i % 10 == 9
                ? Change(operation: .delete, key: .int64(Int64(i)), version: .datetime(Int64(i)))
                : Change(operation: .upsert, key: .int64(Int64(i)), document: ["_id": .int64(Int64(i)), "name": .string("row \(i)"),
                                                                            "amount": .decimal128(Decimal128("\(i).50")!)],
                         version: .datetime(Int64(i)), sourceTimeMillis: Int64(i))
            writer.append(change)
            changes.append(change)
        }
        let path = (directory as NSString).appendingPathComponent("00000000000000000001.seg")
        try writer.seal(to: path, first: .snapshotKey(.columns(["0"])), last: .snapshotKey(.columns([String(count - 1)])))
        return (path, changes)
    }

    /// A segment file that is gone must be extracted again (corrupt); one that cannot be read now is retried.
    func testAMissingSegmentIsCorruptAndAnUnreadableOneIsTransient() throws {
        let dir = NSTemporaryDirectory() + "unreadable-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/1.seg", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try SpoolSegmentReader.read(path: dir + "/2.seg")) { error in
            XCTAssertEqual((error as? SpoolError)?.code, .corrupt, "\(error)")
            XCTAssertFalse((error as? SpoolError)?.isTransient ?? true)
        }
        XCTAssertThrowsError(try SpoolSegmentReader.read(path: dir + "/1.seg")) { error in
            XCTAssertEqual((error as? SpoolError)?.code, .io, "\(error)")
            XCTAssertTrue((error as? SpoolError)?.isTransient ?? false)
        }
    }

    func testSegmentRoundTrip() throws {
        let (path, changes) = try makeSegment()
        let segment = try SpoolSegmentReader.read(path: path)
        XCTAssertEqual(segment.header.stream, "orders")
        XCTAssertEqual(segment.header.recordCount, changes.count)
        XCTAssertEqual(segment.header.lastPosition, .snapshotKey(.columns(["499"])))
        XCTAssertEqual(segment.changes, changes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"), "the temp file is renamed away")
    }

    /// Segments read one after another share the reader's kept buffers: a record spanning several frames, then
    /// small ones, then a huge one again — each segment reads back exactly as written, nothing carried over.
    func testSegmentsReadInTurnShareNoStateThroughTheKeptBuffers() throws {
        func segment(_ sizes: [Int], tag: Int) throws -> (String, [Change]) {
            var writer = SpoolSegmentWriter(stream: "orders")
            let changes = sizes.enumerated().map { i, size in
                Change(operation: .upsert, key: .int64(Int64(i)),
                       document: ["_id": .int64(Int64(i)), "tag": .int32(Int32(tag)), "pad": .string(String(repeating: Character(UnicodeScalar(UInt8(65 + (i + tag) % 26))), count: size))],
                       version: .datetime(Int64(i)))
            }
            for change in changes { writer.append(change) }
            let path = (directory as NSString).appendingPathComponent("seg-\(tag).seg")
            try writer.seal(to: path, first: .snapshotKey(.columns(["0"])), last: .snapshotKey(.columns([String(sizes.count - 1)])))
            return (path, changes)
        }
        let shapes = [[10, 3 << 20, 10], Array(repeating: 100, count: 3_000), [9 << 20], [1, 2, 3], Array(repeating: 700, count: 4_000)]
        for (tag, sizes) in shapes.enumerated() {
            let (path, changes) = try segment(sizes, tag: tag)
            let read = try SpoolSegmentReader.read(path: path)
            XCTAssertEqual(read.changes.count, changes.count, "segment \(tag)")
            XCTAssertTrue(read.changes == changes, "segment \(tag) reads back as written")
        }
    }

    func testCompressesWithZstd() throws {
        let (path, _) = try makeSegment(count: 5000)
        let segment = try SpoolSegmentReader.read(path: path)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        XCTAssertLessThan(size * 2, segment.header.rawLength, "zstd should at least halve repetitive rows")
    }

    func testTruncatedSegmentIsDetected() throws {
        let (path, _) = try makeSegment()
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        for cut in [1, 7, bytes.count / 2, bytes.count - 20] {
            bytes = [UInt8](FileManager.default.contents(atPath: path)!)
            bytes.removeLast(cut)
            XCTAssertThrowsError(try SpoolSegmentReader.decode(bytes, path: path), "cut \(cut)") { error in
                XCTAssertEqual((error as? SpoolError)?.code, .corrupt)
            }
        }
    }

    func testEveryFlippedBitIsDetected() throws {
        let (path, _) = try makeSegment(count: 20)
        let original = [UInt8](FileManager.default.contents(atPath: path)!)
        for index in stride(from: 0, to: original.count, by: max(1, original.count / 97)) {
            for bit in [0, 3, 7] {
                var bytes = original
                bytes[index] ^= UInt8(1 << bit)
                XCTAssertThrowsError(try SpoolSegmentReader.decode(bytes, path: path), "byte \(index) bit \(bit)") { error in
                    XCTAssertEqual((error as? SpoolError)?.code, .corrupt)
                }
            }
        }
    }

    func testCRC32CKnownVector() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testDirectoryRecoveryRemovesUnknownAndTempFiles() async throws {
        let dir = try SpoolDirectory(root: directory, stream: "s")
        for seq in [1, 2, 3] as [Int64] { _ = FileManager.default.createFile(atPath: dir.segmentPath(seq), contents: Data([1])) }
        _ = FileManager.default.createFile(atPath: dir.segmentPath(4) + ".tmp", contents: Data([1]))
        let removed = await dir.removeUnknown(known: [2])
        XCTAssertEqual(removed, 3)
        XCTAssertEqual(dir.sequencesOnDisk(), [2])
        await dir.remove(2)
        XCTAssertEqual(dir.sequencesOnDisk(), [])
    }
}
