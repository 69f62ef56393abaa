import ArgumentParser
import Foundation
import Replication
import StateStore

extension Mongoshift {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validates the configuration, connectivity, privileges, keys, watermark columns and the replica set.",
            discussion: "Reports every problem in one pass, one line each naming its stream or server; exits 1 if there is any.")

        @OptionGroup var options: GlobalOptions

        @Option(help: "Report Mongo oplog windows shorter than this (change-stream history an outage may consume).")
        var minOplogWindow = "24h"

        func validate() throws {
            if ConfigLoader.parseDuration(minOplogWindow) == nil { throw ValidationError("--min-oplog-window: \"\(minOplogWindow)\" is not a duration") }
        }

        func run() async throws {
            do {
                let (config, streams, _) = try options.prepare()
                var check = ConfigCheck(config: config, streams: streams)
                check.minimumOplogWindow = ConfigLoader.parseDuration(minOplogWindow) ?? .seconds(86_400)
                var problems = await check.run()
                // What the running replicator refused to do and is waiting on a human for (read-only: never blocks it).
                if let state = try? await StateStore.open(config, readOnly: true) {
                    for stream in streams {
                        if let refused = try? await state.note(.reconcileRefused, stream: stream.name) {
                            problems.append(ConfigCheck.Problem(subject: stream.name, message: "hard-delete reconcile refused: \(refused)"))
                        }
                    }
                }
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
