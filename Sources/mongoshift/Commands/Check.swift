import ArgumentParser
import Foundation
import Replication

extension Mongoshift {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validates the configuration, connectivity, privileges, keys, watermark columns and the replica set.",
            discussion: "Reports every problem in one pass, one line each naming its stream or server; exits 1 if there is any.")

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            do {
                let (config, streams, _) = try options.prepare()
                let problems = await ConfigCheck(config: config, streams: streams).run()
                for problem in problems { print(problem) }
                if problems.isEmpty {
                    print("ok: \(streams.count) stream(s) checked, no problem found")
                } else {
                    FileHandle.standardError.write(Data("mongoshift: check found \(problems.count) problem(s)\n".utf8))
                    throw Exit.thresholdFailed
                }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }
    }
}
