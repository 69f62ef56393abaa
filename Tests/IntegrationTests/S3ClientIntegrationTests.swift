import Foundation
import S3
import TestSupport
import XCTest

/// The S3 client against the S3 emulator (moto's server, beside ops/dev-redshift): objects up and down, in
/// memory and through files, multipart, listing past a page, batch deletes, and each failure as one line naming
/// the operation, the bucket and the credentials' source.
final class S3ClientIntegrationTests: XCTestCase {
    var client: S3Client!
    var bucket = ""
    var prefix = ""
    var directory = ""

    override func setUp() async throws {
        let (endpoint, bucket) = try TestServers.requireS3()
        self.bucket = bucket
        prefix = TestServers.uniqueName("s3client") + "/"
        directory = try TestServers.temporaryDirectory("s3client")
        var settings = S3Settings(region: ProcessInfo.processInfo.environment["AWS_REGION"] ?? "us-east-1", endpoint: endpoint)
        settings.multipartThreshold = 6 << 20
        settings.partBytes = 5 << 20
        let transport = HTTPTransport(lanes: 2)
        client = S3Client(settings: settings, credentials: CredentialChain(region: settings.region, transport: transport), transport: transport)
    }

    override func tearDown() async throws {
        if let client { _ = try? await client.deletePrefix(bucket, prefix: prefix) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testPutGetListDeleteRoundTrip() async throws {
        try await client.headBucket(bucket)
        let body = Array("hello, s3 ✓\n".utf8)
        try await client.putObject(bucket, key: prefix + "a b/ü+x=1.txt", bytes: body, contentType: "text/plain")
        let got = try await client.getObject(bucket, key: prefix + "a b/ü+x=1.txt")
        XCTAssertEqual(got, body)
        let listed = try await client.list(bucket, prefix: prefix)
        XCTAssertEqual(listed, [S3Object(key: prefix + "a b/ü+x=1.txt", size: Int64(body.count))])
        try await client.deleteObject(bucket, key: prefix + "a b/ü+x=1.txt")
        let after = try await client.list(bucket, prefix: prefix)
        XCTAssertEqual(after, [])
    }

    func testMultipartUploadFromAFileAndDownloadToAFile() async throws {
        let path = directory + "/big.bin"
        var bytes = [UInt8](repeating: 0, count: 13 << 20)
        for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = UInt8(truncatingIfNeeded: i / 4096) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try await client.putObject(bucket, key: prefix + "big.bin", file: path)
        let size = try await client.download(bucket, key: prefix + "big.bin", to: directory + "/back.bin")
        XCTAssertEqual(size, Int64(bytes.count))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: directory + "/back.bin")), Data(bytes))
    }

    func testListingPastOnePageAndDeletingInBatches() async throws {
        for i in 0..<1005 where i % 67 == 0 || i >= 995 {
            try await client.putObject(bucket, key: prefix + String(format: "k%04d", i), bytes: [UInt8(i % 256)])
        }
        let keys = (0..<1005).filter { $0 % 67 == 0 || $0 >= 995 }.map { prefix + String(format: "k%04d", $0) }
        let listed = try await client.list(bucket, prefix: prefix, pageSize: 7).map(\.key)
        XCTAssertEqual(listed, keys, "four pages of seven and one of five")
        try await client.deleteObjects(bucket, keys: keys + [prefix + "never-existed"])
        let after = try await client.list(bucket, prefix: prefix)
        XCTAssertEqual(after, [])
    }

    func testFailuresNameTheOperationBucketAndCredentialSource() async throws {
        do {
            try await client.putObject("no-such-bucket-\(getpid())", key: "x", bytes: [1])
            XCTFail("expected an error")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, .noSuchBucket)
            XCTAssertTrue(e.description.hasPrefix("S3 PutObject s3://no-such-bucket-"), e.description)
            XCTAssertTrue(e.description.contains("[credentials: environment (AWS_ACCESS_KEY_ID)]"), e.description)
            XCTAssertFalse(e.description.contains(ProcessInfo.processInfo.environment["AWS_SECRET_ACCESS_KEY"] ?? "\u{0}"), "never the secret")
        }
        do {
            _ = try await client.getObject(bucket, key: prefix + "missing")
            XCTFail("expected an error")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, .notFound)
        }
        var settings = client.settings
        settings.endpoint = "http://127.0.0.1:1"
        settings.attempts = 2
        let transport = HTTPTransport(lanes: 1)
        let unreachable = S3Client(settings: settings, credentials: CredentialChain(region: settings.region, transport: transport), transport: transport)
        do {
            try await unreachable.headBucket(bucket)
            XCTFail("expected an error")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, .unreachable)
            XCTAssertTrue(e.description.contains("S3 HeadBucket s3://\(bucket): endpoint unreachable"), e.description)
        }
    }
}
