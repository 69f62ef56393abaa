import ShiftCore

/// An error from MongoDB or libmongoc: the kind, the server's error code when there is one, and its labels.
public struct MongoError: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public static let invalidURI = Code(raw: "invalid URI")
        public static let connection = Code(raw: "connection error")
        public static let server = Code(raw: "server error")
        public static let writeConcern = Code(raw: "write concern error")
        public static let client = Code(raw: "client error")
        /// The server refused the credentials (libmongoc reports it as a client error, not the server's 18).
        public static let authentication = Code(raw: "authentication failed")
        public var description: String { raw }
    }

    public var code: Code
    /// The server's numeric error code (11000 duplicate key, 286 ChangeStreamHistoryLost, ...), or libmongoc's.
    public var serverCode: Int
    public var message: String
    public var labels: [String]

    public init(code: Code, serverCode: Int = 0, message: String, labels: [String] = []) {
        self.code = code
        self.serverCode = serverCode
        self.message = message
        self.labels = labels
    }

    /// The server asks the client to slow down: 16500 (Cosmos DB's "Request rate is large"), or an error labelled
    /// `SystemOverloadedError`. Retried after a back-off, never a failure.
    public var isThrottled: Bool { Self.isThrottling(serverCode) || labels.contains("SystemOverloadedError") }

    public static func isThrottling(_ serverCode: Int) -> Bool { serverCode == 16500 }

    /// Network trouble, no primary, a stepping-down primary, shutdown, throttling: retry later.
    public var isTransient: Bool {
        if code == .connection || isThrottled { return true }
        if labels.contains("RetryableWriteError") || labels.contains("ResumableChangeStreamError") { return true }
        return Self.isTransient(serverCode: serverCode)
    }

    /// Server codes that clear by themselves: host unreachable or not found, a cursor or interrupted operation
    /// of a shutdown, a stepped-down or unknown primary, a write conflict, stale shard routing, exceeded time,
    /// a read preference no member satisfies yet or a majority read concern not available yet (mongos while a
    /// shard elects a primary: the drivers' retryable reads), a network interface over its time limit, a
    /// client disconnect. Also the codes of single items of a bulk write (a shard's primary stepping down fails
    /// only its items).
    public static func isTransient(serverCode: Int) -> Bool {
        [6, 7, 43, 63, 89, 91, 112, 133, 134, 150, 189, 202, 262, 279, 9001, 10107, 11600, 11602, 13388, 13435, 13436].contains(serverCode)
    }

    /// ChangeStreamHistoryLost, ChangeStreamFatalError, CappedPositionLost, InvalidResumeToken: the stored token
    /// cannot resume this stream (aged out of the oplog, or not a token of this server).
    public var isHistoryLost: Bool { [286, 280, 136, 260].contains(serverCode) }

    public var description: String {
        "mongo \(code)\(serverCode != 0 ? " \(serverCode)" : ""): \(message)"
    }
}
