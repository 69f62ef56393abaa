import ArgumentParser
import Foundation
import ShiftCore
import Logging
import Replication

/// Options every subcommand shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @Option(name: .customLong("stream"), help: "Only these streams (repeatable). Default: all.")
    var streams: [String] = []

    @Option(help: "Log format: auto (text on a terminal, JSON lines otherwise), text or json.")
    var logFormat: String = "auto"

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be auto, text or json") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be trace, debug, info, notice, warning or error") }
    }

    /// Configures logging, loads the config and selects the streams. Exit 2 on any configuration problem.
    func prepare() throws -> (ReplicationConfig, [StreamConfig], Logger) {
        ShiftLogHandler.bootstrapOnce(format: LogFormat(rawValue: logFormat) ?? .auto, level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "mongoshift")
        let config = try ConfigLoader(file: self.config).load()
        var selected = config.streams
        if !streams.isEmpty {
            for name in streams where config.stream(named: name) == nil {
                throw ConfigError(file: self.config, line: nil, message: "no stream named \"\(name)\" (have: \(config.streams.map(\.name).joined(separator: ", ")))")
            }
            selected = config.streams.filter { streams.contains($0.name) }
        }
        ProgressLine.shared.logger = { p in
            logger.info("snapshot progress", metadata: ["stream": "\(p.stream)", "rows": "\(p.rowsDone)", "total": "\(p.rowsTotal)",
                                                        "rows_per_s": "\(Int(p.rowsPerSecond))",
                                                        "eta_s": "\(p.secondsRemaining.map { Int($0) } ?? -1)"])
        }
        return (config, selected, logger)
    }

    /// The state directory (or `local_dir`) for this process alone, until the lock is released (`WorkerLock`).
    /// Takes the state directory's writer lock, then removes what killed processes left in `<state>/tmp` (COPY
    /// staging files, UNLOAD downloads: names never reused, so they would pile up across crashes, outside
    /// `spool_max_bytes`). Files touched in the last hour stay: a `verify --repair` (no lock) may be using one.
    func lockStateDirectory(_ config: ReplicationConfig, command: String) async throws -> WorkerLock {
        let directory = config.stateDirectory
        return try await IOThread.detached(name: "lock") {
            let lock = try WorkerLock.acquire(directory: directory, command: command)
            let tmp = directory + "/tmp"
            let hourAgo = Date().addingTimeInterval(-3600)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] {
                let path = tmp + "/" + name
                let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
                if let modified, modified < hourAgo { try? FileManager.default.removeItem(atPath: path) }
            }
            return lock
        }
    }
}

extension ShiftLogHandler {
    private static let once = NSLock()
    nonisolated(unsafe) private static var done = false

    static func bootstrapOnce(format: LogFormat, level: Logger.Level) {
        once.lock()
        defer { once.unlock() }
        if done { return }
        done = true
        bootstrap(format: format, level: level)
    }
}
