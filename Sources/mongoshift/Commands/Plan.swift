import ArgumentParser
import Foundation
import Replication
import StateStore

extension Mongoshift {
    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dry run: what `run` would do now, per stream — snapshot or not (estimated size), target DDL, backlog, changes waiting.",
            discussion: "Changes nothing: SELECTs and finds only, the state store opened read-only. --print-sql adds every statement shape.")

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Also print the statement shapes each stream would send (values as placeholders).")
        var printSQL = false

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let state = try? await StateStore.open(config, readOnly: true)
                for plan in try await Planner.plan(config: config, streams: streams, state: state, logger: logger) {
                    print("stream \(plan.stream) (\(plan.direction), phase \(plan.phase))")
                    for line in plan.lines { print("  " + line) }
                    if printSQL {
                        print("  statements:")
                        for statement in plan.statements { print("    " + statement) }
                    }
                }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }
    }
}
