import ArgumentParser
import BSON
import Foundation
import MongoClient
import Replication
import StateStore

extension Mongoshift {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compares source and target per key range (count + hash) and lists the differing keys; --repair fixes them.",
            discussion: "Exit 1 when differences remain (found and not repaired). Both directions.")

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Re-copy exactly the differing keys from the source (and delete documents whose rows are gone).")
        var repair = false

        @Option(help: "List at most this many differing keys per kind.")
        var show = 20

        func validate() throws {
            if show < 0 { throw ValidationError("--show: must be 0 or more") }
        }

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let state = try await StateStore.open(config)
                var remaining = 0
                for stream in streams {
                    let context = try StreamContext(config: config, stream: stream, state: state, logger: logger, progress: nil)
                    let report = try await Verifier(context: context, redshift: config.redshift!, mongo: config.mongo!).run(repair: repair)
                    print("\(stream.name): \(report.rowsChecked) rows checked, \(report.differences) differences "
                          + "(changed \(report.changed.count), missing \(report.missing.count), extra \(report.extra.count))"
                          + (repair ? ", \(report.repaired) repaired" : ""))
                    for (kind, keys) in [("changed", report.changed), ("missing", report.missing), ("extra", report.extra)] where !keys.isEmpty {
                        print("  \(kind): " + keys.prefix(show).map { ExtendedJSON.relaxed($0) }.joined(separator: ", ") + (keys.count > show ? ", …" : ""))
                    }
                    if report.extraUnnamed > 0 {
                        print("  extra: \(report.extraUnnamed) documents without a live source row (the key's Mongo form is not exact — "
                              + "timestamps, floats — so they cannot be named or repaired; the hard-delete reconcile says the same)")
                    }
                    remaining += repair ? report.differences - report.repaired : report.differences
                }
                print("peak RSS \(PeakMemory.megabytes) MiB")
                if remaining > 0 { throw Exit.thresholdFailed }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }
    }
}
