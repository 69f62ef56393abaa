import Foundation
import ShiftCore
import Synchronization

/// The crash-storm schedule and its report, shared by the storm tests and `ops/chaos`.
public enum Storm {
    /// Rounds per direction: `MONGOSHIFT_STORM_ROUNDS` (ops/chaos: 100), else 10 (CI).
    public static var rounds: Int { Int(ProcessInfo.processInfo.environment["MONGOSHIFT_STORM_ROUNDS"] ?? "") ?? 10 }

    /// How one round ends the replicator: at a named crash point (the process SIGKILLs itself there, on the
    /// n-th visit) or by an external `kill -9` at a random moment.
    public enum Blow: CustomStringConvertible {
        case crashPoint(String, visit: Int)
        case killAfter(TimeInterval)

        public var description: String {
            switch self {
            case .crashPoint(let name, let visit): return "\(name)#\(visit)"
            case .killAfter(let s): return String(format: "kill -9 after %.1fs", s)
            }
        }

        /// The environment that arms it (empty for an external kill).
        public var environment: [String: String] {
            if case .crashPoint(let name, let visit) = self { return ["MONGOSHIFT_CRASH_AT": "\(name):\(visit)"] }
            return [:]
        }
    }

    /// Round `i`'s blow: every crash point in turn, with an external kill between them, all with random timing.
    public static func blow(round i: Int, using rng: inout some RandomNumberGenerator) -> Blow {
        let points = CrashPoint.all
        let slot = i % (points.count + 1)
        if slot == points.count { return .killAfter(Double.random(in: 0.3...3.0, using: &rng)) }
        return .crashPoint(points[slot], visit: Int.random(in: 1...4, using: &rng))
    }

    /// One line per direction: printed always, appended to `MONGOSHIFT_RELIABILITY_LOG` (JSON lines) when set.
    public static func report(scenario: String, rounds: Int, crashes: Int, writes: Int, tally: Convergence.Tally, seconds: Double) {
        let fields: [String: Any] = [
            "scenario": scenario, "rounds": rounds, "crashes": crashes, "source_writes": writes, "rows_checked": tally.checked,
            "lost": tally.lost, "duplicated": tally.duplicated, "regressed": tally.regressed, "seconds": Int(seconds.rounded()),
            "date": ISO8601DateFormatter().string(from: Date()),
        ]
        let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        let line = String(decoding: data, as: UTF8.self)
        print("storm result: \(line)")
        if let path = ProcessInfo.processInfo.environment["MONGOSHIFT_RELIABILITY_LOG"], !path.isEmpty {
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            if let handle = FileHandle(forWritingAtPath: path) {
                handle.seekToEndOfFile()
                handle.write(Data((line + "\n").utf8))
                try? handle.close()
            }
        }
    }
}

/// A seeded generator (SplitMix64), so a failing storm can be replayed with `MONGOSHIFT_STORM_SEED`.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public let seed: UInt64
    public init(seed: UInt64? = nil) {
        let s = seed ?? UInt64(ProcessInfo.processInfo.environment["MONGOSHIFT_STORM_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        self.seed = s
        state = s
    }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A one-way flag a test sets to stop a background writer at its next iteration.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func set() { flag.store(true, ordering: .relaxed) }
    public var isSet: Bool { flag.load(ordering: .relaxed) }
}
