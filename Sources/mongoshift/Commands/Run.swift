import ArgumentParser

extension Mongoshift {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Always-on replication of every stream until SIGTERM/SIGINT.")
        @OptionGroup var options: GlobalOptions
        func run() async throws {
            throw ValidationError("not implemented yet")
        }
    }
}
