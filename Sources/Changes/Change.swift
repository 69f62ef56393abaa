import BSON

/// One replicated change: an upsert of a whole document or a delete, keyed by the target `_id`.
public struct Change: Sendable, Equatable {
    public enum Operation: Int32, Sendable {
        case upsert = 1
        case delete = 2
    }

    public var operation: Operation
    /// The target `_id` (a scalar, or a subdocument for composite keys).
    public var key: BSON
    /// The full document for upserts (its `_id` included); nil for deletes.
    public var document: Document?
    /// Monotone version used by the target's guard (the row's watermark, the event's cluster time).
    public var version: BSON?
    /// Source commit time in milliseconds, for lag.
    public var sourceTimeMillis: Int64?

    public init(operation: Operation, key: BSON, document: Document? = nil, version: BSON? = nil, sourceTimeMillis: Int64? = nil) {
        self.operation = operation
        self.key = key
        self.document = document
        self.version = version
        self.sourceTimeMillis = sourceTimeMillis
    }

    /// The spool record: a BSON document `{o, k, d?, v?, t?}` (self-length-prefixed by BSON's int32 length).
    public var record: Document {
        var out = Document(reservingCapacity: (document?.byteCount ?? 0) + 64)
        out.append("o", .int32(operation.rawValue))
        out.append("k", key)
        if let document { out.append("d", .document(document)) }
        if let version { out.append("v", version) }
        if let sourceTimeMillis { out.append("t", .datetime(sourceTimeMillis)) }
        return out
    }

    public init(record: Document) throws {
        try self.init(recordBytes: record.bytes[...])
    }

    /// A record straight from a segment's bytes: validated, then read in place (the document copied once).
    public init(recordBytes: ArraySlice<UInt8>) throws {
        var op: Operation?
        var key: BSON?
        var document: Document?
        var version: BSON?
        var sourceTimeMillis: Int64?
        try recordBytes.withUnsafeBufferPointer { buffer in
            try BSONValueView.withValidatedDocument(buffer) { record in
                record.forEachElement { name, value in
                    guard name.count == 1 else { return }
                    switch name[0] {
                    case UInt8(ascii: "o"):
                        if value.type == 0x10 { op = Operation(rawValue: value.int32) }
                        else if value.type == 0x12 { op = Int32(exactly: value.int64).flatMap(Operation.init(rawValue:)) }
                    case UInt8(ascii: "k"): key = value.decodedScalar
                    case UInt8(ascii: "d"): if value.isDocument { document = Document(trustedBytes: Array(value.bytes)) }
                    case UInt8(ascii: "v"): version = value.decodedScalar
                    case UInt8(ascii: "t"): if value.type == 0x09 { sourceTimeMillis = value.datetime }
                    default: break
                    }
                }
            }
        }
        guard let op, let key else { throw BSONError(message: "change record without op or key") }
        self.init(operation: op, key: key, document: document, version: version, sourceTimeMillis: sourceTimeMillis)
    }
}
