/// An engine error: what kind, which stream, and a one-line reason (no secrets).
public struct ReplicationError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        /// The configuration does not match the source or target (missing table/column/key).
        public static let configuration = Code(raw: "configuration")
        /// Source data mongoshift refuses to guess about (duplicate keys, NULL keys).
        public static let sourceData = Code(raw: "source data")
        /// The change stream cannot resume: history lost.
        public static let historyLost = Code(raw: "history lost")
        /// The source collection was dropped / renamed / invalidated.
        public static let sourceDropped = Code(raw: "source dropped")
        /// Another collection was renamed onto the source's name (`renameCollection`, an aggregation's `$out`):
        /// its documents never passed through the change stream, so a re-snapshot follows, as `on_drop` allows.
        public static let sourceReplaced = Code(raw: "source replaced")
        /// A spool segment was corrupt and discarded, its range rewound: the stream restarts from the state store.
        public static let spool = Code(raw: "spool")
        /// The dead-letter file cannot be written (disk full, permissions): the stream stops rather than lose the
        /// rows it could not deliver.
        public static let deadLetter = Code(raw: "dead letter")
        /// This worker lost the stream's lease: another worker (newer epoch) owns it.
        public static let fenced = Code(raw: "fenced")
        /// The stream stopped on a permanent error (recorded in the state store); the others go on.
        public static let streamFailed = Code(raw: "stream failed")
        public static let `internal` = Code(raw: "internal")
        public var description: String { raw }
    }
    public var code: Code
    public var stream: String
    public var message: String

    public init(_ code: Code, stream: String, _ message: String) {
        self.code = code
        self.stream = stream
        self.message = message
    }

    public var description: String { "stream \(stream): \(message)" }
}
