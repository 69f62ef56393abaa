import Foundation
import Changes
import PostgresClient
import S3
import ShiftCore
import Spool
import StateStore
import Zstd

/// Copies one snapshot partition through `UNLOAD` (docs/ARCHITECTURE.md, "Snapshot"): Redshift writes the
/// partition's rows to S3 in parallel (one or more zstd JSON files per slice, with a manifest); the files are read
/// one at a time — downloaded to local disk, decompressed as a stream, each line decoded by the table's catalog
/// types into the spool, page by page. The partition's position is `(file, rows)`, so a crash resumes at the row
/// after the last durable page of the file it was reading, against the same manifest (an empty page records the
/// UNLOAD itself before the first file is read); without the manifest the partition is unloaded again. The files
/// are deleted once the whole snapshot completes (`RedshiftSnapshotSource.removeUnloadedFiles`).
struct UnloadSnapshotCopier {
    let reader: SourceReader
    let stage: S3Stage

    private var context: StreamContext { reader.context }
    private var table: SourceTable { reader.table }

    static let maxFileBytes = "256 MB"

    func copy(_ partition: PartitionState, lower: String?, upper: String?, into pages: SnapshotPages) async throws {
        let generation = try await context.state.snapshotGeneration(context.name)
        let prefix = stage.prefix("unload") + "g\(generation)/" + String(format: "p%05d/", partition.index)
        var files: [String]?
        var (file, skip) = (0, 0)
        if case .unloadFile(let f, let r)? = partition.lastKey {
            // Only a manifest that is gone (or unreadable) is unloaded again; any other failure (throttling, a
            // server error, credentials) is the stream's to retry, never a second full UNLOAD of the partition.
            do {
                files = try await manifest(prefix)
                (file, skip) = (f, r)
            } catch let error as S3Error where error.code == .notFound {
                context.logger.notice("UNLOAD manifest gone: unloading the partition again", metadata: ["partition": "\(partition.index)"])
            } catch let error as ReplicationError where error.code == .sourceData {
                context.logger.warning("UNLOAD manifest unreadable: unloading the partition again",
                                       metadata: ["partition": "\(partition.index)", "error": "\(error.message)"])
            }
        }
        // Each page starts where the partition's recorded position stands (the state store checks it).
        var cursor = partition.lastKey ?? partition.lower
        if files == nil {
            try await unload(prefix: prefix, lower: lower, upper: upper)
            files = try await manifest(prefix)
            // The UNLOAD is done: an empty page records it (file 0 of the new manifest, also after an UNLOAD that
            // replaced a lost one), so a crash from here on resumes from this manifest's start, never unloading
            // again and never resuming at a position of the old one.
            let mark = SnapshotKey.unloadFile(file: 0, rows: 0)
            try await pages.spool(SpoolSegmentWriter(stream: context.name), partition: partition.index, first: cursor, last: mark)
            cursor = mark
        }
        let encoder = RowEncoder(table: table)
        let local = context.config.stateDirectory + "/tmp"
        try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
        for index in file..<(files?.count ?? 0) {
            if Task.isShuttingDownGracefully { return }
            let path = local + "/\(S3Stage.folder(context.name))-unload-\(partition.index)-\(index).json.zst"
            let finished: Bool
            do {
                let key = files![index]
                try await s3 { [stage] in try await stage.client.download(stage.bucket, key: key, to: path) }
                finished = try await spool(file: path, index: index, skip: index == file ? skip : 0, partition: partition.index,
                                           encoder: encoder, cursor: &cursor, into: pages)
            } catch {
                await Self.remove(path)
                throw error
            }
            await Self.remove(path)
            if !finished { return }
            CrashPoint.hit(CrashPoint.unloadFileSpooled)
        }
        // The files stay until the snapshot completes (`removeUnloadedFiles`): deleted here, a crash before the
        // partition is marked done would find the manifest gone and unload the partition again.
        CrashPoint.hit(CrashPoint.unloadPartitionCopied)
    }

    /// An S3 call under the stream's retry policy: throttling or a server error that outlasts the client's own
    /// attempts is waited out like a lost source connection, not a reason to fail the snapshot.
    @discardableResult
    private func s3<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await reader.policy.run(body, report: RetryReport(logger: context.logger, what: "S3 stage"))
    }

    /// `UNLOAD ('SELECT … WHERE key range') TO 's3://…/pNNNNN/' … FORMAT JSON ZSTD MANIFEST PARALLEL ON`.
    /// The bounds are the planner's integer cuts (numbers only: UNLOAD takes no parameters).
    private func unload(prefix: String, lower: String?, upper: String?) async throws {
        let key = SQL.identifier(table.keyNames[0])
        var conditions: [String] = []
        if let lower { conditions.append("\(key) > \(try Self.integerLiteral(lower))") }
        if let upper { conditions.append("\(key) <= \(try Self.integerLiteral(upper))") }
        if let filter = table.filterCondition { conditions.append(filter) }
        let columns = table.columns.map { SQL.identifier($0.name) }.joined(separator: ", ")
        let query = "SELECT \(columns) FROM \(table.qualifiedName)" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        let statement = "UNLOAD (\(Self.quoted(query))) TO \(SQL.literal(stage.url(prefix))) \(try await stage.authorization()) "
            + "FORMAT AS JSON ZSTD MANIFEST PARALLEL ON MAXFILESIZE \(Self.maxFileBytes) CLEANPATH"
        try await reader.run { c in _ = try await c.execute(statement) }
        context.logger.info("snapshot partition unloaded to S3", metadata: ["prefix": "\(stage.url(prefix))"])
    }

    /// The data files of a manifest, in its order (the order positions refer to).
    private func manifest(_ prefix: String) async throws -> [String] {
        let bytes = try await s3 { [stage] in try await stage.client.getObject(stage.bucket, key: prefix + "manifest") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
              let entries = object["entries"] as? [[String: Any]] else {
            throw ReplicationError(.sourceData, stream: context.name, "UNLOAD manifest \(stage.url(prefix + "manifest")) is not JSON with entries")
        }
        let bucketPrefix = "s3://\(stage.bucket)/"
        return try entries.map { entry in
            guard let url = entry["url"] as? String, url.hasPrefix(bucketPrefix) else {
                throw ReplicationError(.sourceData, stream: context.name, "UNLOAD manifest entry outside s3://\(stage.bucket): \(entry["url"] ?? "?")")
            }
            return String(url.dropFirst(bucketPrefix.count))
        }
    }

    /// Spools one downloaded file from row `skip` on, a page at a time; false when shutdown interrupted it.
    private func spool(file path: String, index: Int, skip: Int, partition: Int, encoder: RowEncoder, cursor: inout SnapshotKey?,
                       into pages: SnapshotPages) async throws -> Bool {
        // The file is read and decompressed on a thread of its own (up to 256 MB of it).
        let io = IOThread(name: "unload-read")
        defer { io.shutdown() }
        let input = try await io.run { try ZstdFileReader(path: path) }
        // Rows are written in place as on the SELECT path; duplicates and NULL keys were reported at planning.
        let sink = PageSink(encoder: encoder, writer: SpoolSegmentWriter(stream: context.name, reserveBytes: pages.pageBytes))
        let decoder = UnloadLineDecoder(columns: table.columns)
        var row = 0
        var pending: [UInt8] = []
        func take(_ line: ArraySlice<UInt8>) throws {
            row += 1
            if row <= skip || line.isEmpty { return }
            try line.withUnsafeBufferPointer { (bytes) throws(UnloadLineDecoder.Malformed) in try decoder.decode(bytes) }
            sink.consume(decoder, detectDuplicates: false)
        }
        func spoolPage(last: SnapshotKey) async throws {
            try await pages.waitForSpace()
            try await pages.deadLetter(sink.deadLetters)
            sink.deadLetters = []
            try await pages.spool(sink.writer, partition: partition, first: cursor, last: last)
            sink.writer = SpoolSegmentWriter(stream: context.name, reserveBytes: pages.pageBytes)
            cursor = last
        }
        while let chunk = try await io.run({ try input.next() }) {
            pending += chunk
            var start = 0
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                try take(pending[start..<newline])
                start = newline + 1
                if sink.writerByteCount >= pages.pageBytes {
                    if Task.isShuttingDownGracefully { return false }
                    try await spoolPage(last: .unloadFile(file: index, rows: row))
                }
            }
            pending.removeFirst(start)
        }
        if !pending.isEmpty { try take(pending[...]) }
        try await spoolPage(last: .unloadFile(file: index + 1, rows: 0))
        return true
    }

    /// Deletes a downloaded file (up to 256 MB: not on the cooperative pool).
    static func remove(_ path: String) async {
        _ = try? await IOThread.detached(name: "unload-remove") { try? FileManager.default.removeItem(atPath: path) }
    }

    static func integerLiteral(_ text: String) throws -> String {
        guard let value = Int64(text) else { throw ReplicationError(.sourceData, stream: "", "UNLOAD partition bound \(text.prefix(40)) is not an integer") }
        return String(value)
    }

    /// The query as UNLOAD's string argument: quotes and backslashes escaped with a backslash.
    static func quoted(_ query: String) -> String {
        "'" + query.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }
}
