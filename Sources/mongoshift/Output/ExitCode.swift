import ArgumentParser

/// Documented exit codes (docs/ARCHITECTURE.md, "Contracts").
enum Exit {
    /// check / verify / lag threshold failed.
    static let thresholdFailed = ExitCode(1)
    /// Usage or configuration error.
    static let usage = ExitCode(2)
    /// Cannot connect to a server.
    static let cannotConnect = ExitCode(3)
    /// Internal error (a bug, or a permanent failure mongoshift cannot classify).
    static let `internal` = ExitCode(4)
}
