import Foundation
import PostgresClient
import S3

/// The S3 staging area of one stream (docs/CONFIG.md, "S3 staging"): `<prefix><stream>/load/…` for COPY batches,
/// `<prefix><stream>/unload/…` for UNLOAD snapshots; the authorization clause COPY and UNLOAD carry.
public struct S3Stage: Sendable {
    public let staging: S3Staging
    public let client: S3Client
    let stream: String

    public init(staging: S3Staging, stream: String, transport: HTTPTransport = HTTPTransport(lanes: 2),
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.staging = staging
        self.stream = stream
        let settings = S3Settings(region: staging.region, endpoint: staging.endpoint)
        let chain = CredentialChain(staging.profile.map { .profile($0) } ?? .standard, region: staging.region, environment: environment, transport: transport)
        client = S3Client(settings: settings, credentials: chain, transport: transport)
    }

    public var bucket: String { staging.bucket }

    /// The stream's key prefix for `kind` ("load", "unload", "probe").
    public func prefix(_ kind: String) -> String {
        staging.prefix + Self.folder(stream) + "/" + kind + "/"
    }

    /// A stream's folder under the staging prefix, also the stem of its local UNLOAD files. Two streams must not
    /// share one (the configuration refuses it): each deletes its folder's leftovers and reads what it finds there.
    public static func folder(_ stream: String) -> String { ColumnNaming.sanitize(stream) }

    public func url(_ key: String) -> String { "s3://\(staging.bucket)/\(key)" }

    /// `IAM_ROLE '…'`, or the client's own credentials (with their session token), plus `REGION`. Carries secrets:
    /// the statement is never logged (`Redaction.redactSQL`).
    public func authorization() async throws -> String {
        var clause: String
        if let role = staging.iamRole {
            clause = role == "default" ? "IAM_ROLE default" : "IAM_ROLE \(SQL.literal(role))"
        } else {
            // Redshift fails a COPY or UNLOAD whose temporary credentials expire while it runs: ask for a
            // half hour of validity (renewed if less is left; `iam_role` has no such limit).
            // Credentials without an expiry are read again (`current`): COPY and UNLOAD sign no request of ours, so a
            // token rotated in a profile's file would only come back as the statement's failure.
            let creds = try await client.credentials.current(validFor: 1800)
            clause = "ACCESS_KEY_ID \(SQL.literal(creds.accessKeyID)) SECRET_ACCESS_KEY \(SQL.literal(creds.secretAccessKey))"
            if let token = creds.sessionToken { clause += " SESSION_TOKEN \(SQL.literal(token))" }
        }
        return clause + " REGION \(SQL.literal(staging.region))"
    }
}
