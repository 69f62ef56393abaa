import BSON

/// Where a stream stands in its source: the one position type of the whole engine. Spool segment headers, the
/// state store's rows and a target's checkpoint row all hold it through the one codec below
/// (`document` / `init(document:)`), so its shape is written down in exactly one place.
public enum StreamPosition: Sendable, Hashable, CustomStringConvertible {
    /// Redshift → Mongo tail: the composite watermark `(wm, key)`.
    case watermark(WatermarkPosition)
    /// Mongo → Redshift tail: a change stream's resume point.
    case changeStream(ChangeStreamPosition)
    /// A snapshot page boundary: the last key copied in a partition (and a partition's bounds).
    case snapshotKey(SnapshotKey)

    public var watermark: WatermarkPosition? {
        if case .watermark(let w) = self { return w }
        return nil
    }

    public var changeStream: ChangeStreamPosition? {
        if case .changeStream(let c) = self { return c }
        return nil
    }

    public var snapshotKey: SnapshotKey? {
        if case .snapshotKey(let k) = self { return k }
        return nil
    }

    public var description: String {
        switch self {
        case .watermark(let w): w.description
        case .changeStream(let c): c.description
        case .snapshotKey(let k): k.description
        }
    }
}

/// A watermark position: the source's text of the watermark value (exact: microseconds and full precision kept)
/// and, when rows tie on it, the text of the last key read. `key == nil`: every row with `value` is still ahead.
public struct WatermarkPosition: Sendable, Hashable, CustomStringConvertible {
    public var value: String
    public var key: [String]?

    public init(value: String, key: [String]? = nil) {
        self.value = value
        self.key = key
    }

    public var description: String { key.map { "\(value) key \($0.joined(separator: ","))" } ?? value }
}

/// A change stream position: the resume token to continue from, the cluster time of the last event (for
/// skew-free lag) and whether the token marks an invalidate (which must be resumed with `startAfter`).
public struct ChangeStreamPosition: Sendable, Hashable, CustomStringConvertible {
    public var resumeToken: Document
    public var clusterTime: BSONTimestamp?
    public var afterInvalidate: Bool

    public init(resumeToken: Document, clusterTime: BSONTimestamp? = nil, afterInvalidate: Bool = false) {
        self.resumeToken = resumeToken
        self.clusterTime = clusterTime
        self.afterInvalidate = afterInvalidate
    }

    /// A start time with no token yet (`reset --to time:`/`now`): the change stream opens at `time`, inclusive;
    /// the first event or idle advance replaces it with a real token.
    public init(startingAt time: BSONTimestamp) {
        self.init(resumeToken: Document(), clusterTime: time)
    }

    /// The start time of a position that has no token yet.
    public var startTime: BSONTimestamp? { resumeToken.isEmpty ? clusterTime : nil }

    public var description: String {
        clusterTime.map { "cluster time \($0.readable)" } ?? "resume token"
    }
}

/// A key in a snapshot's key space: the source's text of the key columns (Redshift/PostgreSQL), or a document's
/// `_id` (Mongo). Mongo compares values within one type bracket only, so a Mongo partition bound may also be the
/// edge of a bracket (`numbers`, `strings`, …): a lower bound there means "from the bracket's first `_id`", an
/// upper bound "to its last".
public enum SnapshotKey: Sendable, Hashable, CustomStringConvertible {
    case columns([String])
    case documentID(BSON)
    case typeBracket(String)
    /// An UNLOAD snapshot partition: files before `file` (in its manifest's order) are spooled, and the first
    /// `rows` rows of `file`.
    case unloadFile(file: Int, rows: Int)

    public var isUnloadFile: Bool {
        if case .unloadFile = self { return true }
        return false
    }

    public var columns: [String]? {
        if case .columns(let c) = self { return c }
        return nil
    }

    public var documentID: BSON? {
        if case .documentID(let id) = self { return id }
        return nil
    }

    public var description: String {
        switch self {
        case .columns(let c): c.joined(separator: ",")
        case .documentID(let id): ExtendedJSON.relaxed(id)
        case .typeBracket(let name): "<\(name)>"
        case .unloadFile(let file, let rows): "file \(file) row \(rows)"
        }
    }
}

/// A stored position that does not decode: the state or a segment was written by something else.
public struct PositionError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { "unreadable stream position: \(reason)" }
}

// MARK: - the codec

extension StreamPosition {
    /// `{w: text, k?: [text]}` · `{t: token, ts?: timestamp, after_invalidate?: true}` · `{k: [text]}` · `{id: _id}` ·
    /// `{tb: bracket}` · `{uf: file, ur: rows}`.
    /// (These are the keys the state stores of earlier versions hold, so they stay readable.)
    public var document: Document {
        switch self {
        case .watermark(let w):
            var d: Document = ["w": .string(w.value)]
            if let key = w.key { d.append("k", .array(key.map(BSON.string))) }
            return d
        case .changeStream(let c):
            var d: Document = ["t": .document(c.resumeToken)]
            if let ts = c.clusterTime { d.append("ts", .timestamp(ts)) }
            if c.afterInvalidate { d.append("after_invalidate", true) }
            return d
        case .snapshotKey(.columns(let key)):
            return ["k": .array(key.map(BSON.string))]
        case .snapshotKey(.documentID(let id)):
            return ["id": id]
        case .snapshotKey(.typeBracket(let name)):
            return ["tb": .string(name)]
        case .snapshotKey(.unloadFile(let file, let rows)):
            return ["uf": .int64(Int64(file)), "ur": .int64(Int64(rows))]
        }
    }

    public init(document: Document) throws(PositionError) {
        func texts(_ value: BSON?) throws(PositionError) -> [String]? {
            guard let value else { return nil }
            guard case .array(let items) = value else { throw PositionError(reason: "key is not an array") }
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw PositionError(reason: "key part is not text") }
                out.append(s)
            }
            return out
        }
        if let w = document["w"] {
            guard case .string(let value) = w else { throw PositionError(reason: "watermark is not text") }
            self = .watermark(WatermarkPosition(value: value, key: try texts(document["k"])))
        } else if let t = document["t"] {
            guard case .document(let token) = t else { throw PositionError(reason: "resume token is not a document") }
            var clusterTime: BSONTimestamp?
            if case .timestamp(let ts)? = document["ts"] { clusterTime = ts }
            self = .changeStream(ChangeStreamPosition(resumeToken: token, clusterTime: clusterTime,
                                                      afterInvalidate: document["after_invalidate"] == .bool(true)))
        } else if let id = document["id"] {
            self = .snapshotKey(.documentID(id))
        } else if case .string(let name)? = document["tb"] {
            self = .snapshotKey(.typeBracket(name))
        } else if let file = document["uf"]?.int64Value, let rows = document["ur"]?.int64Value {
            self = .snapshotKey(.unloadFile(file: Int(file), rows: Int(rows)))
        } else if let k = document["k"] {
            // Earlier versions stored a Mongo partition key as `{k: _id}`; an `_id` is never an array.
            if case .array = k, let key = try texts(k) {
                self = .snapshotKey(.columns(key))
            } else {
                self = .snapshotKey(.documentID(k))
            }
        } else {
            throw PositionError(reason: "no position field in \(ExtendedJSON.relaxed(document))")
        }
    }

    /// An optional position as stored: the empty document means "none yet" (a stream that starts from the beginning).
    public static func encode(_ position: StreamPosition?) -> Document { position?.document ?? Document() }

    public static func decode(_ document: Document) throws(PositionError) -> StreamPosition? {
        document.isEmpty ? nil : try StreamPosition(document: document)
    }

    /// The relaxed Extended JSON text a target's checkpoint row holds.
    public var extendedJSON: String { ExtendedJSON.relaxed(document) }
}
