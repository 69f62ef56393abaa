import ArgumentParser

@main
struct Mongoshift: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mongoshift",
        abstract: "Change-data-capture replication between Amazon Redshift (or PostgreSQL) and MongoDB.",
        discussion: """
        Exit codes: 0 ok · 1 check/verify/lag threshold failed · 2 usage or config error · 3 cannot connect · 4 internal.
        """,
        version: "0.1.0",
        subcommands: [Run.self, Snapshot.self, Lag.self, Check.self, Discover.self, Verify.self])
}
