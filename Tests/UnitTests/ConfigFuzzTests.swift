@testable import mongoshift
import Foundation
import TestSupport
import XCTest

/// Seeded fuzzing of the configuration parser: any text — mutated real configs, shuffled fragments, random
/// bytes — yields a config or one located `ConfigError`; never a crash or another kind of error.
final class ConfigFuzzTests: XCTestCase {
    func testParserSurvivesMutatedConfigs() throws {
        var rng = SeededGenerator(seed: UInt64(ProcessInfo.processInfo.environment["MONGOSHIFT_FUZZ_SEED"] ?? "") ?? 20261122)
        let iterations = Int(ProcessInfo.processInfo.environment["MONGOSHIFT_FUZZ_ITERATIONS"] ?? "") ?? 20_000
        let root = TestServers.repositoryRoot
        var seeds = [try String(contentsOfFile: root + "/fixtures/demo.yaml", encoding: .utf8)]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: root + "/fixtures/bad/config")) ?? [] {
            if let text = try? String(contentsOfFile: root + "/fixtures/bad/config/" + file, encoding: .utf8) { seeds.append(text) }
        }
        let tokens = ["{", "}", "[", "]", ":", "- ", "\n", "  ", "\t", "\"", "'", "${", "$$", "&a", "*a", "!!str ", "? ", "|", ">",
                      "0", "-1", "1e999", "9999999999999999999999", "8MiB", "1.5KiB", "NaN", "~", "null", "streams:", "key: []",
                      "from: { table: x }", "to: { collection: y }", "\u{0}", "é", "\u{FEFF}", "#", "---", "...", "<<: *a"]
        let env = ["MONGOSHIFT_DEMO_STATE": "/tmp/x", "MONGOSHIFT_DEMO_REDSHIFT": "postgresql://h/db", "MONGOSHIFT_DEMO_MONGO": "mongodb://h/"]
        var accepted = 0
        for i in 0..<iterations {
            var text = Array(seeds.randomElement(using: &rng)!)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = text.isEmpty ? 0 : Int.random(in: 0..<text.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: text.insert(contentsOf: tokens.randomElement(using: &rng)!, at: at)
                case 1: if !text.isEmpty { text.removeSubrange(at..<min(text.count, at + Int.random(in: 1...20, using: &rng))) }
                case 2: if !text.isEmpty { text[at] = Character(Unicode.Scalar(UInt8.random(in: 32...126, using: &rng))) }
                default:
                    let len = Int.random(in: 0...40, using: &rng)
                    text.insert(contentsOf: (0..<len).map { _ in Character(Unicode.Scalar(UInt8.random(in: 1...127, using: &rng))) }, at: at)
                }
            }
            do {
                _ = try ConfigLoader(file: "fuzz.yaml", environment: env).parse(String(text))
                accepted += 1
            } catch let error as ConfigError {
                XCTAssertFalse(error.description.contains("\n"), "iteration \(i): one line: \(error)")
            } catch {
                XCTFail("iteration \(i): not a ConfigError: \(error)\n\(String(text))")
            }
        }
        print("config fuzz: \(iterations) inputs, \(accepted) accepted, the rest refused with a located error")
    }
}
