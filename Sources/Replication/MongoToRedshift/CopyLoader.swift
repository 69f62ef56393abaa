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
/// Files are uploaded before the transaction and deleted after it, by key; whatever a crash leaves under the
/// stream's `load/` prefix is removed when the stream starts (`collectLeftovers`).
struct CopyLoader: Sendable {
    let stage: S3Stage
    let localDirectory: String
    let logger: Logger

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
        var oversized: [[String?]]
    }

    /// Writes and uploads `rows` (each row the schema's columns then `__op`).
    func upload(rows: [[String?]], schema: TableSchema, batch: String, slices: Int) async throws -> Staged {
        var lines: [[UInt8]] = []
        var oversized: [[String?]] = []
        lines.reserveCapacity(rows.count)
        let names = schema.columns.map(\.name) + ["__op"]
        let nested = schema.columns.map { $0.type == .nested } + [false]
        var rawBytes = 0
        for row in rows {
            let line = Self.jsonLine(row, names: names, nested: nested)
            if line.count > Self.maxRowBytes {
                oversized.append(row)
            } else {
                rawBytes += line.count
                lines.append(line)
            }
        }
        let prefix = stage.prefix("load") + batch + "/"
        guard !lines.isEmpty else { return Staged(manifestURL: "", keys: [], rows: 0, compressedBytes: 0, oversized: oversized) }
        let files = Self.fileCount(estimatedCompressedBytes: Int64(rawBytes / 4), slices: slices, rows: lines.count)
        try FileManager.default.createDirectory(atPath: localDirectory, withIntermediateDirectories: true)
        var keys: [String] = []
        var entries: [String] = []
        var compressed: Int64 = 0
        for f in 0..<files {
            let path = localDirectory + "/\(ColumnNaming.sanitize(stage.stream))-\(batch)-\(f).json.zst"
            defer { try? FileManager.default.removeItem(atPath: path) }
            let writer = try ZstdFileWriter(path: path)
            var i = f
            while i < lines.count {
                try writer.write(lines[i])
                i += files
            }
            try writer.finish()
            let key = prefix + String(format: "part-%04d.json.zst", f)
            try await stage.client.putObject(stage.bucket, key: key, file: path)
            keys.append(key)
            compressed += writer.compressedBytes
            entries.append("{\"url\":\"\(stage.url(key))\",\"mandatory\":true,\"meta\":{\"content_length\":\(writer.compressedBytes)}}")
        }
        let manifestKey = prefix + "manifest"
        try await stage.client.putObject(stage.bucket, key: manifestKey, bytes: Array("{\"entries\":[\(entries.joined(separator: ","))]}".utf8),
                                         contentType: "application/json")
        keys.append(manifestKey)
        CrashPoint.hit(CrashPoint.loadUploaded)
        return Staged(manifestURL: stage.url(manifestKey), keys: keys, rows: lines.count, compressedBytes: compressed, oversized: oversized)
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

    /// Removes what earlier runs left under the stream's `load/` prefix (a crash between upload and cleanup).
    func collectLeftovers() async throws -> Int {
        let removed = try await stage.client.deletePrefix(stage.bucket, prefix: stage.prefix("load"))
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

    /// One JSON object per row: names as the table's columns, every non-null scalar a JSON string.
    static func jsonLine(_ row: [String?], names: [String], nested: [Bool]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, value) in row.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendJSONString(names[i], to: &out)
            out.append(UInt8(ascii: ":"))
            guard let value else { out += Array("null".utf8); continue }
            if nested[i] { out += Array(value.utf8) } else { appendJSONString(value, to: &out) }
        }
        out += [UInt8(ascii: "}"), 0x0A]
        return out
    }

    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        out.append(0x22)
        for byte in text.utf8 {
            switch byte {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default: out.append(byte)
            }
        }
        out.append(0x22)
    }
}
