import ArgumentParser

extension Mongoshift {
    struct Lag: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How far each stream is behind.")
        @OptionGroup var options: GlobalOptions
        func run() async throws {
            throw ValidationError("not implemented yet")
        }
    }
}
