import StateStore

extension StateStore {
    /// Opens the store a configuration names: a PostgreSQL URL, else the SQLite file in the state directory.
    public static func open(_ config: ReplicationConfig, readOnly: Bool = false) throws -> StateStore {
        if let url = config.stateURL { return try StateStore(url: url, localDirectory: config.stateDirectory, readOnly: readOnly) }
        return try StateStore(directory: config.stateDirectory, readOnly: readOnly)
    }
}
