import Foundation

/// A one-file Python HTTP endpoint a test scripts (STS, instance metadata, a flaky S3 proxy): started with its
/// arguments, it prints its port on its first line; stop it with `stop()` (SIGKILL: a test runner's blocked
/// SIGTERM is inherited by its children).
public final class ScriptedEndpoint: @unchecked Sendable {
    public let process: Process
    public let port: String

    public init(script: String, at path: String, arguments: [String]) throws {
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [path] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        port = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard Int(port) != nil else {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\(path) printed no port (it failed to start)"])
        }
    }

    public var url: String { "http://127.0.0.1:" + port }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
