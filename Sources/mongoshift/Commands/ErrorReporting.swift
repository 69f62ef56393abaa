import ArgumentParser
import Foundation
import MongoClient
import PostgresClient
import Replication
import S3
import ShiftCore
import StateStore

/// Maps any error to its one-line message and documented exit code, prints it, and exits.
enum ErrorReporting {
    static func exitCode(for error: Error) -> ExitCode {
        switch error {
        case is ConfigError: return Exit.usage
        case is MetricsServerError: return Exit.usage
        // Another process runs in this state directory.
        case is WorkerLock.Held: return Exit.usage
        case let e as ReplicationError where e.code == .configuration: return Exit.usage
        case let e as PostgresError where e.code == .connectionFailed: return Exit.cannotConnect
        // Insufficient privilege: the grants do not match the configuration.
        case let e as PostgresError where e.sqlState == "42501": return Exit.usage
        case let e as MongoError where e.code == .invalidURI: return Exit.usage
        case let e as MongoError where e.code == .connection || e.code == .authentication: return Exit.cannotConnect
        // The staging bucket: missing, refused, unreachable, or no credentials.
        case is S3Error: return Exit.cannotConnect
        case let e as StateStoreError where e.code == .corrupt: return Exit.internal
        case is CancellationError: return .success
        default: return Exit.internal
        }
    }

    static func fail(_ error: Error) -> Error {
        if error is ExitCode || error is ValidationError || error is CleanExit { return error }
        let code = exitCode(for: error)
        if code != .success {
            FileHandle.standardError.write(Data("mongoshift: error: \(Redaction.redact("\(error)"))\n".utf8))
        }
        return code
    }
}
