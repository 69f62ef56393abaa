import BSON
internal import CMongoC
import Foundation
import ShiftCore

private let mongocReady: Void = {
    mongoc_init()
    mongoc_log_set_handler(nil, nil)  // libmongoc writes warnings to stderr otherwise; errors come back as values
}()

/// libmongoc as Debian builds it initialises itself when the library loads and maps its counters from
/// /dev/shm/mongoc-<pid>, removing that file only in its exit handler: a process killed with SIGKILL left it behind
/// (tmpfs memory nobody frees), and the next process given the same pid had libmongoc warn on stderr. Removing the
/// name as the process starts keeps the mapping and leaves nothing behind however the process ends. Call it first.
public func releaseMongocCounterFile() {
    _ = shm_unlink("/mongoc-\(getpid())")
}

/// One write of an unordered bulk.
public enum WriteOperation: Sendable {
    case insert(Document)
    case replace(filter: Document, replacement: Document, upsert: Bool)
    case update(filter: Document, update: Document, upsert: Bool)
    case delete(filter: Document)

    /// The documents' encoded size (what the operation adds to a write command).
    var byteCount: Int {
        switch self {
        case .insert(let d): d.byteCount
        case .replace(let f, let r, _): f.byteCount + r.byteCount
        case .update(let f, let u, _): f.byteCount + u.byteCount
        case .delete(let f): f.byteCount
        }
    }

    /// The document written (inserted or replacing) has an empty key somewhere.
    var writesEmptyKey: Bool {
        switch self {
        case .insert(let d): d.containsEmptyKey
        case .replace(_, let r, _): r.containsEmptyKey
        case .update, .delete: false
        }
    }
}

public struct BulkWriteError: Sendable, Hashable {
    /// Index into the operations passed to `bulkWrite`.
    public var index: Int
    public var code: Int
    public var message: String

    public init(index: Int, code: Int, message: String) {
        (self.index, self.code, self.message) = (index, code, message)
    }
}

public struct BulkWriteResult: Sendable {
    public var inserted = 0, matched = 0, modified = 0, upserted = 0, removed = 0
    public var writeErrors: [BulkWriteError] = []

    public init() {}

    /// Adds the result of a later bulk that wrote operations from `offset` on (its error indexes shift by it).
    public mutating func append(_ other: BulkWriteResult, offset: Int) {
        inserted += other.inserted
        matched += other.matched
        modified += other.modified
        upserted += other.upserted
        removed += other.removed
        writeErrors += other.writeErrors.map { var e = $0; e.index += offset; return e }
    }
}

/// A libmongoc client. Its blocking calls run on the client's own thread, one at a time; use separate clients
/// for work that must proceed in parallel (a tailer's change stream and an applier's writes).
///
/// `@unchecked Sendable`: `client` is only used on `io`'s thread; `deinit` runs when nothing else can reach it.
public final class MongoClient: @unchecked Sendable {
    private let io: IOThread
    private let client: OpaquePointer
    /// The URL with its password removed; safe to log.
    public let redactedURL: String

    /// `init(url:)` on a thread of its own: creating a client resolves a `mongodb+srv://` URL's DNS records
    /// synchronously, which must not hold a thread of the cooperative pool.
    /// `primaryReads`: every read goes to the primary, whatever the URL's `readPreference` (a snapshot's reads
    /// must see everything up to the change stream position it starts from, which another member may not have).
    public static func connect(url: String, appName: String = "mongoshift", primaryReads: Bool = false) async throws -> MongoClient {
        try await IOThread.detached(name: "mongo-connect") { try MongoClient(url: url, appName: appName, primaryReads: primaryReads) }
    }

    /// `connect` when there is a URL.
    public static func connect(optional url: String?) async throws -> MongoClient? {
        guard let url else { return nil }
        return try await connect(url: url)
    }

    /// Parses the URL and creates the client (libmongoc connects lazily, on the first operation).
    /// `serverSelectionTimeoutMS` defaults to 5 s here so an unreachable server is reported promptly.
    public init(url: String, appName: String = "mongoshift", primaryReads: Bool = false) throws {
        _ = mongocReady
        redactedURL = Redaction.redact(url)
        var error = bson_error_t()
        guard let uri = mongoc_uri_new_with_error(url, &error) else {
            throw MongoError(code: .invalidURI, message: "\(Self.message(error)) [\(Redaction.redact(url))]")
        }
        defer { mongoc_uri_destroy(uri) }
        if !mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000)
        }
        if !mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 5000)
        }
        guard let client = mongoc_client_new_from_uri_with_error(uri, &error) else {
            throw MongoError(code: .invalidURI, message: "\(Self.message(error)) [\(redactedURL)]")
        }
        mongoc_client_set_error_api(client, Int32(MONGOC_ERROR_API_VERSION_2))
        mongoc_client_set_appname(client, appName)
        if primaryReads {
            let primary = mongoc_read_prefs_new(MONGOC_READ_PRIMARY)
            mongoc_client_set_read_prefs(client, primary)
            mongoc_read_prefs_destroy(primary)
        }
        self.client = client
        self.io = IOThread(name: "libmongoc")
    }

    deinit {
        let client = UnsafeClient(client)
        let destroy: @Sendable () -> Void = { mongoc_client_destroy(client.pointer) }
        if !io.submit(destroy) { destroy() }
        io.shutdown()
    }

    // MARK: - commands

    /// Runs a database command and returns the reply (`ok: 1`), or throws the server's error.
    @discardableResult
    public func command(_ command: Document, database: String) async throws -> Document {
        try await io.run {
            try withBSON(command) { cmd in
                try withReply { reply, error in
                    mongoc_client_command_with_opts(self.client, database, cmd, nil, nil, reply, &error)
                }
            }
        }
    }

    public func ping() async throws {
        try await command(["ping": 1], database: "admin")
    }

    /// Document count matching `filter` (the `count` command; exact, unlike estimatedDocumentCount).
    public func count(database: String, collection: String, filter: Document = Document()) async throws -> Int {
        let reply = try await command(Document(elements: [("count", .string(collection)), ("query", .document(filter))]), database: database)
        return reply["n"]?.intValue ?? 0
    }

    public func drop(database: String, collection: String) async throws {
        do {
            try await command(["drop": .string(collection)], database: database)
        } catch let error as MongoError where error.serverCode == 26 {
            return  // NamespaceNotFound: already gone
        }
    }

    // MARK: - writes

    /// MongoDB's limits on one write command: operations per batch, and a size well under the 48 MB message.
    public static let maxBatchOperations = 100_000
    static let maxBatchBytes = 32 << 20

    /// An unordered (or ordered) bulk write. The operations are cut here into server-sized batches (at most
    /// 100,000 operations and 32 MiB of documents each), each executed as its own command, so that every batch's
    /// outcome is known: per-item failures (duplicate keys, invalid documents) come back in `writeErrors`; a batch
    /// that fails as a whole (network, step-down, a command error) throws — even when an earlier batch reported
    /// item errors — because its writes may not have happened. Batches before it stay written (callers' writes
    /// are idempotent); an ordered bulk stops at the first item error as MongoDB does.
    public func bulkWrite(database: String, collection: String, _ operations: [WriteOperation],
                          ordered: Bool = false, majority: Bool = true, validation: ClientValidation = .full) async throws -> BulkWriteResult {
        var total = BulkWriteResult()
        var start = 0
        while start < operations.count {
            var end = start
            var bytes = 0
            while end < operations.count, end - start < Self.maxBatchOperations {
                let size = operations[end].byteCount
                if end > start && bytes + size > Self.maxBatchBytes { break }
                bytes += size
                end += 1
            }
            let batch = try await bulkBatch(database: database, collection: collection, operations[start..<end], ordered: ordered,
                                            majority: majority, validation: validation)
            total.inserted += batch.inserted
            total.matched += batch.matched
            total.modified += batch.modified
            total.upserted += batch.upserted
            total.removed += batch.removed
            total.writeErrors += batch.writeErrors.map { BulkWriteError(index: $0.index + start, code: $0.code, message: $0.message) }
            if ordered && !batch.writeErrors.isEmpty { break }
            start = end
        }
        return total
    }

    /// What libmongoc checks in documents before sending them (the server checks what it stores either way).
    public enum ClientValidation: Sendable {
        /// libmongoc's defaults: UTF-8 strings, no empty keys.
        case full
        /// Documents whose text was validated when they were built: only the empty-key check of written documents,
        /// done here in one walk (libmongoc's visit also re-validates every key as UTF-8).
        case skipUTF8
        /// Nothing (tests that seed what only the server should judge).
        case none
    }

    /// One server batch; item errors are indexed within the batch.
    private func bulkBatch(database: String, collection: String, _ operations: ArraySlice<WriteOperation>,
                           ordered: Bool, majority: Bool, validation: ClientValidation) async throws -> BulkWriteResult {
        if operations.isEmpty { return BulkWriteResult() }
        let operations = Array(operations)
        return try await io.run {
            let coll = mongoc_client_get_collection(self.client, database, collection)!
            defer { mongoc_collection_destroy(coll) }
            var optsDoc = Document(["ordered": .bool(ordered)])
            if majority { optsDoc.append("writeConcern", .document(["w": "majority"])) }
            let bulk = withBSON(optsDoc) { mongoc_collection_create_bulk_operation_with_opts(coll, $0)! }
            defer { mongoc_bulk_operation_destroy(bulk) }
            var result = BulkWriteResult()
            // Operations libmongoc refuses client-side (invalid keys) never reach the server: report them by index.
            var serverIndex: [Int] = []
            serverIndex.reserveCapacity(operations.count)
            let flags: Int32? = validation == .full ? nil : 0
            let insertOptions = flags.map { Document(["validate": .int32($0)]) } ?? Document()
            var upsertTrue = Document(["upsert": true])
            if let flags { upsertTrue.append("validate", .int32(flags)) }
            let noOptions = Document()
            for (index, operation) in operations.enumerated() {
                if validation == .skipUTF8 && operation.writesEmptyKey {
                    result.writeErrors.append(BulkWriteError(index: index, code: Int(MONGOC_ERROR_COMMAND_INVALID_ARG.rawValue),
                                                             message: "document has an empty key; the client refuses to send it"))
                    continue
                }
                var error = bson_error_t()
                let added: Bool
                switch operation {
                case .insert(let doc):
                    added = withBSON(doc) { d in withBSON(insertOptions) { o in mongoc_bulk_operation_insert_with_opts(bulk, d, o, &error) } }
                case .replace(let filter, let replacement, let upsert):
                    added = withBSON(filter) { f in withBSON(replacement) { r in withBSON(upsert ? upsertTrue : noOptions) { o in
                        mongoc_bulk_operation_replace_one_with_opts(bulk, f, r, o, &error) } } }
                case .update(let filter, let update, let upsert):
                    added = withBSON(filter) { f in withBSON(update) { u in withBSON(upsert ? upsertTrue : noOptions) { o in
                        mongoc_bulk_operation_update_one_with_opts(bulk, f, u, o, &error) } } }
                case .delete(let filter):
                    added = withBSON(filter) { mongoc_bulk_operation_remove_one_with_opts(bulk, $0, nil, &error) }
                }
                if added { serverIndex.append(index) }
                else { result.writeErrors.append(BulkWriteError(index: index, code: Int(error.code), message: Self.message(error))) }
            }
            if serverIndex.isEmpty { return result }
            var error = bson_error_t()
            var ok = false
            let replyDoc = withReplyStorage { reply in ok = mongoc_bulk_operation_execute(bulk, reply, &error) != 0 }
            result.inserted = replyDoc["nInserted"]?.intValue ?? 0
            result.matched = replyDoc["nMatched"]?.intValue ?? 0
            result.modified = replyDoc["nModified"]?.intValue ?? 0
            result.upserted = replyDoc["nUpserted"]?.intValue ?? 0
            result.removed = replyDoc["nRemoved"]?.intValue ?? 0
            var itemErrors: [BulkWriteError] = []
            if case .array(let errors)? = replyDoc["writeErrors"] {
                for case .document(let e) in errors {
                    let i = e["index"]?.intValue ?? 0
                    itemErrors.append(BulkWriteError(index: i < serverIndex.count ? serverIndex[i] : i,
                                                     code: e["code"]?.intValue ?? 0,
                                                     message: e["errmsg"]?.stringValue ?? ""))
                }
            }
            let writeConcernFailed: Bool = {
                if case .array(let items)? = replyDoc["writeConcernErrors"] { return !items.isEmpty }
                return false
            }()
            // A failure that is not one of the item errors (the batch failed as a whole) must reach the caller.
            if !ok && (itemErrors.isEmpty || writeConcernFailed || !itemErrors.contains(where: { $0.code == Int(error.code) })) {
                throw Self.mongoError(error, reply: replyDoc)
            }
            result.writeErrors += itemErrors
            result.writeErrors.sort { $0.index < $1.index }
            return result
        }
    }

    // MARK: - reads

    /// What a read may return: MongoDB's read concern.
    public struct ReadConcern: Sendable {
        public enum Level: String, Sendable {
            /// The node's newest data, including writes a failover may still roll back.
            case local
            /// Only what a majority of the replica set has acknowledged: never rolled back.
            case majority
        }
        public var level: Level
        /// The read waits until the node's data (at `level`) includes this cluster time — even on a node elected
        /// since, whose majority-committed view may start behind the one a client saw before.
        public var afterClusterTime: BSONTimestamp?

        public init(_ level: Level, afterClusterTime: BSONTimestamp? = nil) {
            self.level = level
            self.afterClusterTime = afterClusterTime
        }
    }

    /// Streams matching documents to `onDocument` (on the client's thread), batch by batch, until it returns
    /// false; memory stays one server batch deep. Returns the number of documents handed over. `readConcern`
    /// nil: the server's default (local on a replica set).
    @discardableResult
    public func find(database: String, collection: String, filter: Document, sort: Document? = nil,
                     projection: Document? = nil, limit: Int? = nil, batchSize: Int? = nil, readConcern: ReadConcern? = nil,
                     onDocument: @escaping @Sendable (Document) throws -> Bool) async throws -> Int {
        var opts = Document()
        if let readConcern { opts.append("readConcern", .document(["level": .string(readConcern.level.rawValue)])) }
        if let sort { opts.append("sort", .document(sort)) }
        if let projection { opts.append("projection", .document(projection)) }
        if let limit { opts.append("limit", .int64(Int64(limit))) }
        if let batchSize { opts.append("batchSize", .int32(Int32(batchSize))) }
        let after = readConcern?.afterClusterTime
        return try await io.run { [opts] in
            let coll = mongoc_client_get_collection(self.client, database, collection)!
            defer { mongoc_collection_destroy(coll) }
            // libmongoc keeps only a read concern's level from the options: `afterClusterTime` is sent by a causally
            // consistent session whose operation time is advanced to it (it outlives the cursor).
            let session = try after.map { try CausalSession(client: self.client, after: $0) }
            defer { session?.end() }
            let cursor = try withBSON(filter) { f in
                try withBSON(opts) { o in
                    guard let session else { return mongoc_collection_find_with_opts(coll, f, o, nil)! }
                    return try session.withOptions(o) { mongoc_collection_find_with_opts(coll, f, $0, nil)! }
                }
            }
            defer { mongoc_cursor_destroy(cursor) }
            var count = 0
            var doc: OpaquePointer?
            while mongoc_cursor_next(cursor, &doc) {
                count += 1
                guard try onDocument(Self.document(doc!)) else { return count }
            }
            var error = bson_error_t()
            var replyPointer: OpaquePointer?
            if mongoc_cursor_error_document(cursor, &error, &replyPointer) {
                throw Self.mongoError(error, reply: replyPointer.map { Self.document($0) } ?? Document())
            }
            return count
        }
    }

    /// `find` collected into an array, for small results.
    public func findAll(database: String, collection: String, filter: Document = Document(), sort: Document? = nil,
                        projection: Document? = nil, limit: Int? = nil, readConcern: ReadConcern? = nil) async throws -> [Document] {
        let box = DocumentBox()
        try await find(database: database, collection: collection, filter: filter, sort: sort, projection: projection,
                       limit: limit, readConcern: readConcern) { box.append($0); return true }
        return box.documents
    }

    // MARK: - change streams

    /// Opens a change stream on a collection (or the whole database when `collection` is nil).
    /// `options` are `$changeStream` options: fullDocument, resumeAfter, startAfter, startAtOperationTime,
    /// maxAwaitTimeMS, batchSize. The stream shares this client's thread.
    public func watch(database: String, collection: String?, pipeline: [Document] = [],
                      options: Document) async throws -> ChangeStream {
        let stream = try await io.run { () -> UnsafeClient in
            let pipelineDoc = Document(["pipeline": .array(pipeline.map(BSON.document))])
            let raw: OpaquePointer = try withBSON(pipelineDoc) { p in
                try withBSON(options) { o in
                    let stream: OpaquePointer
                    if let collection {
                        let coll = mongoc_client_get_collection(self.client, database, collection)!
                        defer { mongoc_collection_destroy(coll) }
                        stream = mongoc_collection_watch(coll, p, o)!
                    } else {
                        let db = mongoc_client_get_database(self.client, database)!
                        defer { mongoc_database_destroy(db) }
                        stream = mongoc_database_watch(db, p, o)!
                    }
                    var error = bson_error_t()
                    var reply: OpaquePointer?
                    if mongoc_change_stream_error_document(stream, &error, &reply) {
                        let e = Self.mongoError(error, reply: reply.map { Self.document($0) } ?? Document())
                        mongoc_change_stream_destroy(stream)
                        throw e
                    }
                    return stream
                }
            }
            return UnsafeClient(raw)
        }
        return ChangeStream(owner: self, stream: stream.pointer)
    }

    func nextBatch(_ stream: OpaquePointer, maxEvents: Int, maxBytes: Int, maxWait: Duration) async throws -> ChangeBatch {
        let handle = UnsafeClient(stream)
        return try await io.run {
            var events: [Document] = []
            var bytes = 0
            let deadline = ContinuousClock.now + maxWait
            var doc: OpaquePointer?
            // Each `next` returns a buffered event at once, or waits one getMore (maxAwaitTimeMS) for the server.
            while events.count < maxEvents, bytes < maxBytes, events.isEmpty || ContinuousClock.now < deadline,
                  mongoc_change_stream_next(handle.pointer, &doc) {
                let event = Self.document(doc!)
                bytes += event.byteCount
                events.append(event)
            }
            var error = bson_error_t()
            var reply: OpaquePointer?
            if mongoc_change_stream_error_document(handle.pointer, &error, &reply) {
                throw Self.mongoError(error, reply: reply.map { Self.document($0) } ?? Document())
            }
            let token = mongoc_change_stream_get_resume_token(handle.pointer).map { Self.document($0) }
            return ChangeBatch(events: events, resumeToken: token)
        }
    }

    func destroy(_ stream: OpaquePointer) {
        let handle = UnsafeClient(stream)
        let destroy: @Sendable () -> Void = { mongoc_change_stream_destroy(handle.pointer) }
        if !io.submit(destroy) { destroy() }
    }

    // MARK: - bson_t bridging (client thread only)

    static func document(_ pointer: OpaquePointer) -> Document {
        let data = bson_get_data(pointer)!
        let length = Int(UInt32(data[0]) | UInt32(data[1]) << 8 | UInt32(data[2]) << 16 | UInt32(data[3]) << 24)
        return Document(trustedBytes: Array(UnsafeBufferPointer(start: data, count: length)))
    }

    static func message(_ error: bson_error_t) -> String {
        withUnsafeBytes(of: error.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    static func mongoError(_ error: bson_error_t, reply: Document) -> MongoError {
        var labels: [String] = []
        if case .array(let items)? = reply["errorLabels"] { labels = items.compactMap(\.stringValue) }
        let (kind, serverCode) = classify(domain: error.domain, code: error.code)
        return MongoError(code: kind, serverCode: serverCode, message: Redaction.redact(message(error)), labels: labels)
    }

    /// libmongoc's error domain and code → the error's kind and the server's code (0 when the error is the client's).
    static func classify(domain: UInt32, code: UInt32) -> (MongoError.Code, Int) {
        switch domain {
        case MONGOC_ERROR_CLIENT.rawValue where code == MONGOC_ERROR_CLIENT_AUTHENTICATE.rawValue: (.authentication, 0)
        case MONGOC_ERROR_CLIENT.rawValue: (.client, 0)
        case MONGOC_ERROR_STREAM.rawValue, MONGOC_ERROR_SERVER_SELECTION.rawValue: (.connection, 0)
        case MONGOC_ERROR_WRITE_CONCERN.rawValue: (.writeConcern, Int(code))
        default: (.server, Int(code))
        }
    }
}

/// Raw C handles carried to the client's thread.
struct UnsafeClient: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

/// Collects documents from a callback that runs on the client's thread while the caller awaits.
final class DocumentBox: @unchecked Sendable {
    // @unchecked: appended only on the client's thread, read after the awaited call returns.
    var documents: [Document] = []
    func append(_ d: Document) { documents.append(d) }
}

/// Lends a Document to libmongoc as a read-only `bson_t` for the duration of `body`: a static `bson_t` over the
/// document's own bytes, its header on the stack — no allocation or copy per document.
func withBSON<R>(_ document: Document, _ body: (OpaquePointer) throws -> R) rethrows -> R {
    try document.bytes.withUnsafeBufferPointer { buffer in
        try withUnsafeTemporaryAllocation(byteCount: 128, alignment: 128) { storage in
            let b = OpaquePointer(storage.baseAddress!)
            // The bytes were validated as a document when the Document was made: a refusal here is a bug.
            precondition(bson_init_static(b, buffer.baseAddress, buffer.count), "libbson refused a validated document")
            defer { bson_destroy(b) }
            return try body(b)
        }
    }
}

/// A causally consistent session whose reads wait for a cluster time (`afterClusterTime`): one owner, ended once.
struct CausalSession {
    let handle: OpaquePointer

    init(client: OpaquePointer, after time: BSONTimestamp) throws {
        let options = mongoc_session_opts_new()
        defer { mongoc_session_opts_destroy(options) }
        mongoc_session_opts_set_causal_consistency(options, true)
        var error = bson_error_t()
        guard let started = mongoc_client_start_session(client, options, &error) else { throw MongoClient.mongoError(error, reply: Document()) }
        handle = started
        mongoc_client_session_advance_operation_time(handle, time.seconds, time.increment)
    }

    /// `options` copied with this session's id appended, for the length of `body`.
    func withOptions<R>(_ options: OpaquePointer, _ body: (OpaquePointer) throws -> R) throws -> R {
        let copy = bson_copy(options)!
        defer { bson_destroy(copy) }
        var error = bson_error_t()
        guard mongoc_client_session_append(handle, copy, &error) else { throw MongoClient.mongoError(error, reply: Document()) }
        return try body(copy)
    }

    func end() { mongoc_client_session_destroy(handle) }
}

/// Calls a libmongoc function that fills a reply `bson_t`; throws its error when it returns false.
func withReply(_ body: (OpaquePointer, inout bson_error_t) -> Bool) throws -> Document {
    var error = bson_error_t()
    var ok = false
    let doc = withReplyStorage { reply in ok = body(reply, &error) }
    if !ok { throw MongoClient.mongoError(error, reply: doc) }
    return doc
}

/// Storage for a `bson_t` that libmongoc initialises (reply out-parameters). Swift sees `bson_t` as opaque
/// (it is 128-byte aligned), so the struct is allocated here with libbson's size and alignment.
func withReplyStorage(_ body: (OpaquePointer) -> Void) -> Document {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
    let reply = OpaquePointer(raw)
    bson_init(reply)
    body(reply)
    let doc = MongoClient.document(reply)
    bson_destroy(reply)
    raw.deallocate()
    return doc
}
