import Foundation
import PostgresClient
import S3

/// Proves the S3 staging works before anything depends on it (docs/CONFIG.md, "S3 staging"): this process can
/// put, read back and delete an object under the prefix, and Redshift can read one (a one-line COPY into a
/// temporary table). Each failure is an error naming the step, the bucket and the credentials' source.
public enum S3Probe {
    /// The streams that stage through S3 against `endpoint` (COPY loads, UNLOAD snapshots).
    public static func needsS3(_ streams: [StreamConfig], _ endpoint: RedshiftEndpoint?) -> Bool {
        guard let endpoint, endpoint.s3 != nil, endpoint.dialect == .redshift else { return false }
        return streams.contains { $0.direction == .mongoToRedshift ? $0.loadMethod(endpoint) == .copy : $0.extract != .select }
    }

    /// Put, list, get and delete a probe object (listing: leftovers are found by it, at start and after UNLOADs).
    public static func bucketAccess(_ staging: S3Staging) async throws {
        let stage = S3Stage(staging: staging, stream: "_probe", transport: HTTPTransport(lanes: 1))
        let key = stage.prefix("probe") + UUID().uuidString
        let body = Array("{\"x\":\"ok\"}\n".utf8)
        try await stage.client.putObject(stage.bucket, key: key, bytes: body)
        _ = try await stage.client.list(stage.bucket, prefix: stage.prefix("probe"))
        let back = try await stage.client.getObject(stage.bucket, key: key)
        try await stage.client.deleteObject(stage.bucket, key: key)
        guard back == body else {
            throw S3Error(.failed, operation: "GetObject", bucket: stage.bucket, key: key, message: "the probe object came back different")
        }
    }

    /// Redshift reads the bucket with the configured authorization: COPY of a one-line probe file.
    public static func redshiftReads(_ staging: S3Staging, on c: PostgresConnection) async throws {
        let stage = S3Stage(staging: staging, stream: "_probe", transport: HTTPTransport(lanes: 1))
        let key = stage.prefix("probe") + UUID().uuidString
        try await stage.client.putObject(stage.bucket, key: key, bytes: Array("{\"x\":\"ok\"}\n".utf8))
        do {
            _ = try await c.execute("CREATE TEMP TABLE mongoshift_s3_probe (x varchar(8))")
            _ = try await c.execute("COPY mongoshift_s3_probe FROM \(SQL.literal(stage.url(key))) \(try await stage.authorization()) FORMAT AS JSON 'auto'")
            let n = try await c.query("SELECT CAST(count(*) AS integer) FROM mongoshift_s3_probe").rows.first?.first ?? nil
            _ = try? await c.execute("DROP TABLE mongoshift_s3_probe")
            try? await stage.client.deleteObject(stage.bucket, key: key)
            guard n == "1" else { throw ReplicationError(.configuration, stream: "s3", "Redshift's COPY of \(stage.url(key)) loaded \(n ?? "no") rows, not 1") }
        } catch let error as PostgresError {
            _ = try? await c.execute("DROP TABLE IF EXISTS mongoshift_s3_probe")
            try? await stage.client.deleteObject(stage.bucket, key: key)
            throw ReplicationError(.configuration, stream: "s3", "Redshift cannot read s3://\(stage.bucket)/\(stage.prefix("probe")) (COPY): \(error.message)")
        }
    }
}
