import ArgumentParser
import Foundation
import MongoClient

@main
struct Mongoshift: AsyncParsableCommand {
    /// Everything mongoshift writes (state db, spool, dead letters) holds positions and row data: owner only.
    static func main() async {
        releaseMongocCounterFile()
        MemoryTuning.apply()  // libbson's allocator is to be replaced before anything allocates through it
        umask(0o077)
        // A peer that closed its socket (a metrics scraper, a server) is an error on that write, never the process's end.
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            // The argument parser's usage failures exit 64 (EX_USAGE); mongoshift documents 2 for every usage or
            // configuration error (docs/ARCHITECTURE.md, "Contracts").
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(Exit.usage.rawValue)
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "mongoshift",
        abstract: "Change-data-capture replication between Amazon Redshift (or PostgreSQL) and MongoDB.",
        discussion: """
        Exit codes: 0 ok · 1 check/verify/lag threshold failed, or a reset refused · 2 usage or config error · 3 cannot connect · 4 internal.
        """,
        version: "0.1.0",
        subcommands: [Run.self, Snapshot.self, Plan.self, Lag.self, Check.self, Discover.self, Verify.self, Reset.self])
}
