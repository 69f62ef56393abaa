import ShiftCore

/// A state store failure, the same for both engines: what kind, a one-line reason, and the statement when one
/// was running (never values: they are bound).
public struct StateStoreError: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        /// Another process holds SQLite's lock: retry.
        public static let busy = Code(raw: "busy")
        /// The PostgreSQL store cannot be reached right now (connection lost, server restarting): retry.
        public static let unavailable = Code(raw: "unavailable")
        /// The database file is damaged or not a database.
        public static let corrupt = Code(raw: "corrupt")
        /// Nothing has run yet in this state directory (read-only opens).
        public static let missing = Code(raw: "missing")
        /// The database was written by a newer mongoshift.
        public static let schemaTooNew = Code(raw: "schema too new")
        /// This worker no longer holds the stream's lease (or the partition's claim): the write was refused.
        public static let fenced = Code(raw: "fenced")
        /// The extract position was rewound (spool recovery, takeover, reset) since this extractor read it: the
        /// extractor must restart from the store.
        public static let rewound = Code(raw: "rewound")
        /// A stream phase change the lifecycle does not allow.
        public static let illegalTransition = Code(raw: "illegal transition")
        /// A stored value does not decode.
        public static let unreadable = Code(raw: "unreadable")
        /// The state store's disk is full (SQLite's SQLITE_FULL): waited out, as the spool's is.
        public static let noSpace = Code(raw: "no space")
        /// Any other engine error (a bug, a permission problem).
        public static let engine = Code(raw: "engine error")
        public var description: String { raw }
    }

    public var code: Code
    public var message: String
    public var statement: String?

    public init(_ code: Code, _ message: String, statement: String? = nil) {
        self.code = code
        self.message = message
        self.statement = statement.map { $0.count > 160 ? String($0.prefix(160)) + "…" : $0 }
    }

    public var isTransient: Bool { code == .busy || code == .unavailable || code == .noSpace }

    public var description: String {
        "state store \(code): \(message)" + (statement.map { " [\($0)]" } ?? "")
    }
}
