import Changes
import Zstd
import Foundation
import MongoClient
import Spool
import XCTest

/// Seeded fuzzing of the spool reader: whatever the bytes, `decode` returns a segment or throws `.corrupt` —
/// never crashes, hangs or allocates what a damaged header claims. Mutations re-seal the checksum most of the
/// time, so they reach the header, zstd and record parsers instead of stopping at the CRC.
final class SpoolFuzzTests: XCTestCase {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    var rng = Generator(state: UInt64(ProcessInfo.processInfo.environment["MONGOSHIFT_FUZZ_SEED"] ?? "") ?? 20261122)
    var iterations: Int { Int(ProcessInfo.processInfo.environment["MONGOSHIFT_FUZZ_ITERATIONS"] ?? "") ?? 20_000 }

    func validSegment() throws -> [UInt8] {
        var writer = SpoolSegmentWriter(stream: "orders")
        for i in 0..<40 {
            writer.append(Change(operation: i % 7 == 0 ? .delete : .upsert, key: .int64(Int64(i)),
                                 document: i % 7 == 0 ? nil : ["_id": .int64(Int64(i)), "s": .string("v\(i)"), "a": .array([.int32(1), .double(2.5)])],
                                 version: .datetime(Int64(i))))
        }
        return try writer.encode(first: .snapshotKey(.columns(["0"])), last: .snapshotKey(.columns(["39"])))
    }

    /// Re-seals the trailing CRC-32C over everything before it.
    func reseal(_ bytes: inout [UInt8]) {
        guard bytes.count >= 4 else { return }
        let crc = CRC32C.checksum(Array(bytes[..<(bytes.count - 4)]))
        for i in 0..<4 { bytes[bytes.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
    }

    func field(_ bytes: inout [UInt8], at offset: Int, width: Int, value: UInt64) {
        guard offset + width <= bytes.count else { return }
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// A segment whose payload is `raw` (any bytes), correctly compressed, sized and checksummed: reaches the
    /// record parser with garbage.
    func segment(withRaw raw: [UInt8], from valid: [UInt8]) -> [UInt8] {
        let payloadLength = valid[20..<28].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let headerEnd = valid.count - 4 - payloadLength
        var payload: [UInt8] = []
        try! raw.withUnsafeBytes { try ZstdCompressor().compress($0, appendingTo: &payload) }
        let n = payload.count
        var out = Array(valid[..<headerEnd]) + payload + [0, 0, 0, 0]
        field(&out, at: 12, width: 8, value: UInt64(raw.count))
        field(&out, at: 20, width: 8, value: UInt64(n))
        reseal(&out)
        return out
    }

    func check(_ bytes: [UInt8], _ what: String) {
        do {
            _ = try SpoolSegmentReader.decode(bytes, path: "fuzz.seg")
        } catch let error as SpoolError {
            XCTAssertEqual(error.code, .corrupt, "\(what): \(error)")
        } catch {
            XCTFail("\(what): unexpected error type \(error)")
        }
    }

    func testReaderSurvivesMutatedSegments() throws {
        let valid = try validSegment()
        XCTAssertEqual(try SpoolSegmentReader.decode(valid, path: "ok").changes.count, 40)
        for i in 0..<iterations {
            var bytes = valid
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: // flipped bits
                for _ in 0..<Int.random(in: 1...8, using: &rng) { bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng)) }
            case 1: // truncation
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            case 2: // header fields set to extreme values
                let offsets = [(4, 2), (8, 4), (12, 8), (20, 8), (28, 2)]
                let (o, w) = offsets.randomElement(using: &rng)!
                field(&bytes, at: o, width: w, value: [0, 1, UInt64.max, UInt64(UInt32.max), UInt64.random(in: 0...UInt64.max, using: &rng)].randomElement(using: &rng)!)
            case 3: // random garbage
                bytes = (0..<Int.random(in: 0..<512, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if Bool.random(using: &rng), bytes.count >= 4 { bytes.replaceSubrange(0..<4, with: SpoolSegmentHeader.magic) }
            case 4: // inserted bytes
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            default: // a well-formed envelope around a damaged record stream
                var raw = try validRaw()
                for _ in 0..<Int.random(in: 1...6, using: &rng) { raw[Int.random(in: 0..<raw.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
                if Bool.random(using: &rng) { raw = Array(raw.prefix(Int.random(in: 0..<raw.count, using: &rng))) }
                bytes = segment(withRaw: raw, from: valid)
            }
            if Int.random(in: 0..<10, using: &rng) < 7 { reseal(&bytes) }
            check(bytes, "iteration \(i)")
        }
    }

    /// The valid segment's records, uncompressed (what the payload holds).
    func validRaw() throws -> [UInt8] {
        let valid = try validSegment()
        let payloadLength = valid[20..<28].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var raw: [UInt8] = []
        try valid.withUnsafeBytes {
            try Zstd.forEachFrame(UnsafeRawBufferPointer(rebasing: $0[(valid.count - 4 - payloadLength)..<(valid.count - 4)])) { raw += $0 }
        }
        return raw
    }
}
