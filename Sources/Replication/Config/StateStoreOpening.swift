import ShiftCore
import StateStore

extension StateStore {
    /// Opens the store a configuration names: a PostgreSQL URL, else the SQLite file in the state directory.
    /// Opening blocks (files, SQLite, a libpq connection, migrations): it runs on a thread of its own.
    public static func open(_ config: ReplicationConfig, readOnly: Bool = false) async throws -> StateStore {
        let (url, directory) = (config.stateURL, config.stateDirectory)
        return try await IOThread.detached(name: "state-open") {
            if let url { return try StateStore(url: url, localDirectory: directory, readOnly: readOnly) }
            return try StateStore(directory: directory, readOnly: readOnly)
        }
    }
}
