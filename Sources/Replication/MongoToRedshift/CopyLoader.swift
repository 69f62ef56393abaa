import Foundation
import Logging
import PostgresClient
import S3
import ShiftCore
import Zstd

/// Stages a Mongo → Redshift batch in S3 for `COPY` (docs/ARCHITECTURE.md, "Mongo → Redshift"): its rows as
/// JSON lines (every scalar a JSON string Redshift converts to the column type, nested values as JSON for SUPER,
/// binaries as hex for VARBYTE, NULL as null), zstd-compressed into as many files as the cluster has slices
/// when each still holds ≥ 1 MB compressed (fewer otherwise; each ≤ 1 GB), and a manifest. Rows over COPY's
/// 4 MB row limit are handed back for multi-row INSERTs in the same transaction.
///
/// Files are uploaded before the transaction and deleted after it, by key; whatever a crash leaves under this
/// worker's `load/<worker>/` prefix is removed when the stream starts here again (`collectLeftovers`). Each worker
/// has its own prefix: during a shared snapshot every worker loads its own pages, and one starting must not remove
/// the files another is about to COPY.
struct CopyLoader: Sendable {
    let stage: S3Stage
    /// This worker (`StateStore.workerID`).
    let worker: String
    let localDirectory: String
    let logger: Logger

    /// Where this worker's batches are staged.
    var loadPrefix: String { stage.prefix("load") + worker + "/" }

    /// COPY refuses a row (one input record) over 4 MB.
    static let maxRowBytes = 4_000_000
    static let minFileBytes: Int64 = 1 << 20
    static let maxFileBytes: Int64 = 1 << 30

    struct Staged: Sendable {
        var manifestURL: String
        var keys: [String]
        var rows: Int
        var compressedBytes: Int64
        /// Rows too large for COPY (they go through INSERT).
        var oversized: StagedRows
    }

    /// Writes and uploads `rows`.
    func upload(rows: StagedRows, schema: TableSchema, batch: String, slices: Int) async throws -> Staged {
        // Every line in one buffer; `lineStarts` (plus the end) delimit them.
        var text = PlainText()
        var lineStarts: [Int] = []
        var oversized = StagedRows(width: rows.width)
        lineStarts.reserveCapacity(rows.count + 1)
        let jsonKeys = Self.jsonKeys(schema.columns.map(\.name) + ["__op"])
        let nested = schema.columns.map { $0.type == .nested } + [false]
        for row in 0..<rows.count {
            let start = text.bytes.count
            Self.writeJSONLine(row, of: rows, keys: jsonKeys, nested: nested, to: &text)
            if text.bytes.count - start > Self.maxRowBytes {
                text.bytes.removeSubrange(start...)
                oversized.appendRow(row, of: rows)
            } else {
                lineStarts.append(start)
            }
        }
        let lineCount = lineStarts.count
        lineStarts.append(text.bytes.count)
        let rawBytes = text.bytes.count
        let prefix = loadPrefix + batch + "/"
        guard lineCount > 0 else { return Staged(manifestURL: "", keys: [], rows: 0, compressedBytes: 0, oversized: oversized) }
        let files = Self.fileCount(estimatedCompressedBytes: Int64(rawBytes / 4), slices: slices, rows: lineCount)
        let paths = (0..<files).map { localDirectory + "/\(ColumnNaming.sanitize(stage.stream))-\(batch)-\($0).json.zst" }
        // Compressing, writing and fsyncing the files is blocking work: on a thread of its own.
        let (bytes, starts, directory) = (text.bytes, lineStarts, localDirectory)
        let sizes: [Int64] = try await IOThread.detached(name: "copy-files") {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                return try paths.enumerated().map { f, path in
                    let writer = try ZstdFileWriter(path: path)
                    try bytes.withUnsafeBytes { all in
                        var i = f
                        while i < lineCount {
                            try writer.write(UnsafeRawBufferPointer(rebasing: all[starts[i]..<starts[i + 1]]))
                            i += files
                        }
                    }
                    try writer.finish()
                    return writer.compressedBytes
                }
            } catch {
                Self.removeFiles(paths)
                throw error
            }
        }
        var keys: [String] = []
        var entries: [String] = []
        do {
            for (f, path) in paths.enumerated() {
                let key = prefix + String(format: "part-%04d.json.zst", f)
                try await stage.client.putObject(stage.bucket, key: key, file: path)
                keys.append(key)
                entries.append("{\"url\":\"\(stage.url(key))\",\"mandatory\":true,\"meta\":{\"content_length\":\(sizes[f])}}")
            }
        } catch {
            _ = try? await IOThread.detached(name: "copy-files") { Self.removeFiles(paths) }
            throw error
        }
        _ = try? await IOThread.detached(name: "copy-files") { Self.removeFiles(paths) }
        let compressed = sizes.reduce(0, +)
        let manifestKey = prefix + "manifest"
        try await stage.client.putObject(stage.bucket, key: manifestKey, bytes: Array("{\"entries\":[\(entries.joined(separator: ","))]}".utf8),
                                         contentType: "application/json")
        keys.append(manifestKey)
        CrashPoint.hit(CrashPoint.loadUploaded)
        return Staged(manifestURL: stage.url(manifestKey), keys: keys, rows: lineCount, compressedBytes: compressed, oversized: oversized)
    }

    private static func removeFiles(_ paths: [String]) {
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }

    /// `COPY stage (…) FROM 's3://…/manifest' … MANIFEST` — carries credentials: never logged.
    func copyStatement(stageTable: String, schema: TableSchema, staged: Staged) async throws -> String {
        let columns = (schema.columns.map { SQL.identifier($0.name) } + ["\"__op\""]).joined(separator: ", ")
        return "COPY \(stageTable) (\(columns)) FROM \(SQL.literal(staged.manifestURL)) \(try await stage.authorization()) "
            + "MANIFEST FORMAT AS JSON 'auto' ZSTD TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF"
    }

    /// Deletes a batch's objects (after its transaction, whatever its outcome). A failure only leaves them for
    /// the next start's collection.
    func remove(_ staged: Staged) async {
        guard !staged.keys.isEmpty else { return }
        do {
            try await stage.client.deleteObjects(stage.bucket, keys: staged.keys)
        } catch {
            logger.warning("could not delete staged COPY files; the next start removes them", metadata: ["error": "\(error)"])
        }
    }

    /// Removes what this worker's earlier runs left under its `load/` prefix (a crash between upload and cleanup).
    func collectLeftovers() async throws -> Int {
        let removed = try await stage.client.deletePrefix(stage.bucket, prefix: loadPrefix)
        if removed > 0 { logger.notice("removed staged COPY files an earlier run left", metadata: ["objects": "\(removed)"]) }
        return removed
    }

    /// Files per batch: a multiple of the slice count while each keeps ≥ 1 MB compressed (and ≤ 1 GB); fewer
    /// for small batches; never more than rows.
    static func fileCount(estimatedCompressedBytes: Int64, slices: Int, rows: Int) -> Int {
        let slices = max(1, slices)
        let perFileAtSlices = estimatedCompressedBytes / Int64(slices)
        var files: Int
        if perFileAtSlices >= minFileBytes {
            let rounds = Int((estimatedCompressedBytes + Int64(slices) * maxFileBytes - 1) / (Int64(slices) * maxFileBytes))
            files = slices * max(1, rounds)
        } else {
            files = max(1, Int(estimatedCompressedBytes / minFileBytes))
        }
        return max(1, min(files, rows))
    }

    /// Each column's `"name":`, escaped once per batch.
    static func jsonKeys(_ names: [String]) -> [[UInt8]] {
        names.map { name in
            var key = PlainText()
            key.appendJSONString(name)
            key.append(UInt8(ascii: ":"))
            return key.bytes
        }
    }

    /// One JSON object per row: keys as the table's columns, every non-null scalar a JSON string, nested values
    /// as their JSON.
    static func writeJSONLine(_ row: Int, of rows: StagedRows, keys: [[UInt8]], nested: [Bool], to out: inout PlainText) {
        out.append(UInt8(ascii: "{"))
        for column in 0..<rows.width {
            if column > 0 { out.append(UInt8(ascii: ",")) }
            out.bytes.append(contentsOf: keys[column])
            rows.values.withValue(at: row * rows.width + column) { value in
                guard let value else { return out.append("null" as StaticString) }
                if nested[column] { out.append(value) } else { out.appendJSONString(value) }
            }
        }
        out.append(UInt8(ascii: "}"))
        out.append(0x0A)
    }
}
