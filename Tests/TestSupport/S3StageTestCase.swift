import Foundation
import S3

/// Integration tests through the Redshift stand-in with S3 staging: the stand-in's URL and statement log, the S3
/// emulator's bucket, a prefix of the test's own (emptied at teardown) and a client to look into it.
open class S3StageTestCase: IntegrationTestCase {
    public var rs = ""
    public var log: StatementLog!
    public var s3: S3Client!
    public var bucket = ""
    public var endpoint = ""
    public var prefix = ""

    open override func setUp() async throws {
        try await super.setUp()
        let (url, path) = try TestServers.requireRedshift()
        (endpoint, bucket) = try TestServers.requireS3()
        rs = url
        log = StatementLog(path: path)
        prefix = TestServers.uniqueName("stage") + "/"
        let transport = HTTPTransport(lanes: 1)
        let region = ProcessInfo.processInfo.environment["AWS_REGION"] ?? "us-east-1"
        s3 = S3Client(settings: S3Settings(region: region, endpoint: endpoint), credentials: CredentialChain(region: region, transport: transport), transport: transport)
        onTeardown { [s3, bucket, prefix] in _ = try? await s3?.deletePrefix(bucket, prefix: prefix) }
    }
}
