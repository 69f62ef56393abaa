import Foundation
import S3
import Replication
import XCTest

/// SigV4 against the worked examples of AWS's S3 documentation ("Signature Calculations for the Authorization
/// Header: Transferring Payload in a Single Chunk"): same inputs, same signatures.
final class S3SigningTests: XCTestCase {
    let credentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", source: "test")
    let signer = SigV4Signer(region: "us-east-1")
    let date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

    func authorization(_ method: String, path: String, query: [(String, String)] = [], headers: [(String, String)] = [],
                       payload: String = SigV4Signer.emptyPayloadHash) -> String {
        let signed = signer.sign(method: method, host: "examplebucket.s3.amazonaws.com", path: path, query: SigV4Signer.canonicalQuery(query),
                                 headers: headers, payloadHash: payload, credentials: credentials, date: date)
        return signed.first { $0.0 == "authorization" }!.1
    }

    func testGetObjectWithRange() {
        XCTAssertEqual(authorization("GET", path: "/test.txt", headers: [("Range", "bytes=0-9")]),
                       "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                       + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testPutObjectWithAnEncodedKey() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let hash = Digest.hex(Digest.sha256(body))
        XCTAssertEqual(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let auth = authorization("PUT", path: "/" + SigV4Signer.encode("test$file.text", keepSlash: true),
                                 headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")], payload: hash)
        XCTAssertTrue(auth.hasSuffix("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                                     + "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"), auth)
    }

    func testGetBucketLifecycleValuelessParameter() {
        XCTAssertTrue(authorization("GET", path: "/", query: [("lifecycle", "")])
            .hasSuffix("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"))
    }

    func testListObjectsSortsTheQuery() {
        XCTAssertEqual(SigV4Signer.canonicalQuery([("prefix", "J"), ("max-keys", "2")]), "max-keys=2&prefix=J")
        XCTAssertTrue(authorization("GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")])
            .hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))
    }

    func testEncodingKeepsOnlyUnreservedCharacters() {
        XCTAssertEqual(SigV4Signer.encode("a b/c+d=e~f_g.h-i", keepSlash: false), "a%20b%2Fc%2Bd%3De~f_g.h-i")
        XCTAssertEqual(SigV4Signer.encode("dir/ü.zst", keepSlash: true), "dir/%C3%BC.zst")
    }

    func testSessionTokenIsSignedAndSent() {
        var temporary = credentials
        temporary.sessionToken = "token/with+chars"
        let signed = signer.sign(method: "GET", host: "h", path: "/", query: "", headers: [], payloadHash: SigV4Signer.emptyPayloadHash,
                                 credentials: temporary, date: date)
        XCTAssertEqual(signed.first { $0.0 == "x-amz-security-token" }?.1, "token/with+chars")
        XCTAssertTrue(signed.first { $0.0 == "authorization" }!.1.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"))
    }

    func testCredentialDescriptionNeverShowsTheSecret() {
        XCTAssertFalse("\(credentials)".contains("wJalr"))
    }

    // MARK: the credential chain's local sources

    func chain(_ environment: [String: String]) -> CredentialChain {
        CredentialChain(region: "us-east-1", environment: environment.merging(["AWS_EC2_METADATA_DISABLED": "true"]) { a, _ in a },
                        transport: HTTPTransport(lanes: 1))
    }

    func testEnvironmentComesFirst() async throws {
        let found = try await chain(["AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t", "HOME": "/nonexistent"]).credentials()
        XCTAssertEqual(found.accessKeyID, "AKENV")
        XCTAssertEqual(found.sessionToken, "t")
        XCTAssertEqual(found.source, "environment (AWS_ACCESS_KEY_ID)")
    }

    func testProfilesFromTheSharedFiles() async throws {
        let dir = NSTemporaryDirectory() + "aws-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[prod]\naws_access_key_id=AKPROD\naws_secret_access_key=s2\n"
            .write(toFile: dir + "/credentials", atomically: true, encoding: .utf8)
        try "[profile staging]\nregion = eu-west-1\naws_access_key_id = AKSTAGING\naws_secret_access_key = s3\n"
            .write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let files = ["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/config"]
        let byDefault = try await chain(files).credentials()
        XCTAssertEqual(byDefault.accessKeyID, "AKDEFAULT")
        let prod = try await chain(files.merging(["AWS_PROFILE": "prod"]) { a, _ in a }).credentials()
        XCTAssertEqual(prod.accessKeyID, "AKPROD")
        let staging = try await chain(files.merging(["AWS_PROFILE": "staging"]) { a, _ in a }).credentials()
        XCTAssertEqual(staging.accessKeyID, "AKSTAGING")
        let named = CredentialChain(.profile("prod"), region: "us-east-1", environment: files.merging(["AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "x"]) { a, _ in a },
                                    transport: HTTPTransport(lanes: 1))
        let chosen = try await named.credentials()
        XCTAssertEqual(chosen.accessKeyID, "AKPROD", "a named profile skips the environment")
    }

    /// A profile that assumes a role (or runs a credential process, or SSO) has no keys of its own: it was skipped
    /// and the chain went on to the instance or task role — requests signed as another identity. A profile named
    /// by AWS_PROFILE that does not exist was skipped the same way (the SDKs refuse it).
    func testProfilesMongoshiftCannotUseAreRefusedNotSkipped() async throws {
        let dir = NSTemporaryDirectory() + "aws-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[profile etl]\nrole_arn = arn:aws:iam::1:role/etl\nsource_profile = base\n[profile base]\naws_access_key_id = AKBASE\naws_secret_access_key = s\n"
            .write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let files = ["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/config",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds"]
        // `AWS_PROFILE=default` without any files goes on down the chain (here: the container endpoint, unreachable).
        do {
            _ = try await chain(files.merging(["AWS_PROFILE": "default"]) { a, _ in a }).credentials()
        } catch let e as S3Error {
            XCTAssertFalse(e.description.contains("no profile default"), e.description)
        }
        for (profile, expected) in [("etl", "role_arn"), ("nosuch", "no profile nosuch")] {
            do {
                _ = try await chain(files.merging(["AWS_PROFILE": profile]) { a, _ in a }).credentials()
                XCTFail("\(profile): expected a refusal")
            } catch let e as S3Error {
                XCTAssertEqual(e.code, .credentialsUnavailable, "\(profile)")
                XCTAssertTrue(e.description.contains(expected), e.description)
            }
        }
    }

    /// UNLOAD signs no request of ours: a profile's session token rotated in its file was never read again (no
    /// expiry to renew by), and the UNLOAD failed on ExpiredToken until mongoshift restarted.
    func testCopyAndUnloadCarryTheProfilesCurrentToken() async throws {
        let dir = NSTemporaryDirectory() + "aws-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ token: String) throws {
            try "[etl]\naws_access_key_id = ASIA1\naws_secret_access_key = s\naws_session_token = \(token)\n"
                .write(toFile: dir + "/credentials", atomically: true, encoding: .utf8)
        }
        try write("tokenA")
        var staging = S3Staging(bucket: "b")
        staging.profile = "etl"
        let stage = S3Stage(staging: staging, stream: "s", transport: HTTPTransport(lanes: 1),
                            environment: ["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/config"])
        let first = try await stage.authorization()
        XCTAssertTrue(first.contains("SESSION_TOKEN 'tokenA'"))
        try write("tokenB")
        let second = try await stage.authorization()
        XCTAssertTrue(second.contains("SESSION_TOKEN 'tokenB'"), "the rotated token")
    }

    func testNoCredentialsAnywhereIsOneClearError() async throws {
        do {
            _ = try await chain(["HOME": "/nonexistent"]).credentials()
            XCTFail("expected no credentials")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, .credentialsUnavailable)
            XCTAssertTrue(e.description.contains("no AWS credentials found"), e.description)
        }
    }
}

/// Where requests go: virtual-hosted by default, path-style where the wildcard certificate cannot match (bucket
/// names with dots) or an endpoint is given; China's partition has its own domain.
final class S3AddressingTests: XCTestCase {
    func testAWSAddressing() {
        let aws = S3Settings(region: "eu-west-1")
        XCTAssertEqual(aws.address(bucket: "acme", key: "a b/c").0, "https://acme.s3.eu-west-1.amazonaws.com")
        XCTAssertEqual(aws.address(bucket: "acme", key: "a b/c").2, "/a%20b/c")
        // *.s3.<region>.amazonaws.com does not match acme.etl.s3.…: path style.
        let dotted = aws.address(bucket: "acme.etl", key: "k")
        XCTAssertEqual(dotted.0, "https://s3.eu-west-1.amazonaws.com")
        XCTAssertEqual(dotted.1, "s3.eu-west-1.amazonaws.com")
        XCTAssertEqual(dotted.2, "/acme.etl/k")
        XCTAssertEqual(S3Settings(region: "cn-north-1").address(bucket: "acme", key: nil).1, "acme.s3.cn-north-1.amazonaws.com.cn")
        XCTAssertEqual(S3Settings(region: "us-east-1", endpoint: "http://127.0.0.1:9000/").address(bucket: "b", key: "k").0, "http://127.0.0.1:9000")
    }

    /// An endpoint written with its scheme's default port was signed with `host:443` while libcurl sends the Host
    /// header without it: every request failed SignatureDoesNotMatch.
    func testTheDefaultPortIsLeftOutOfTheSignedHost() {
        XCTAssertEqual(S3Settings(region: "us-east-1", endpoint: "https://s3.example.com:443").address(bucket: "b", key: "k").1, "s3.example.com")
        XCTAssertEqual(S3Settings(region: "us-east-1", endpoint: "http://minio.local:80/").address(bucket: "b", key: "k").1, "minio.local")
        XCTAssertEqual(S3Settings(region: "us-east-1", endpoint: "https://s3.example.com:8443").address(bucket: "b", key: "k").1, "s3.example.com:8443")
    }
}
