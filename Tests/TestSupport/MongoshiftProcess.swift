import Foundation

/// Runs the built `mongoshift` binary, as operators do.
public struct MongoshiftProcess {
    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public static var binary: String {
        if let path = ProcessInfo.processInfo.environment["MONGOSHIFT_BIN"] { return path }
        let root = TestServers.repositoryRoot
        for candidate in [".build/debug/mongoshift", ".build/release/mongoshift"] {
            let path = (root as NSString).appendingPathComponent(candidate)
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return (root as NSString).appendingPathComponent(".build/debug/mongoshift")
    }

    /// Starts the binary with output captured to files (no pipe can fill up and block it).
    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> (Process, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let base = NSTemporaryDirectory() + "mongoshift-out-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        try process.run()
        return (process, base)
    }

    public static func output(_ base: String) -> Result {
        let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return Result(status: 0, stdout: out, stderr: err)
    }

    /// Runs to completion (or `timeout`, then kills it) and returns status and output.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 300) throws -> Result {
        let (process, base) = try start(arguments, environment: environment)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitPolling()
        var result = output(base)
        result.status = process.terminationStatus
        return result
    }
}

extension Process {
    /// Waits for exit by polling (Foundation's waitUntilExit() can hang on Linux off the main thread).
    public func waitPolling(timeout: TimeInterval = 120) {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(10_000) }
    }
}
