import Foundation
import S3
import TestSupport
import XCTest

/// Temporary credentials renewed through STS (web identity, as on EKS) against a scripted STS: a renewal that
/// fails for a moment is retried, and while the credentials in hand are still valid it stops nothing — as the AWS
/// SDKs behave. A 503 from STS used to fail the stream for good, within the hour of every renewal.
final class CredentialRenewalTests: XCTestCase {
    /// A one-file STS: answers each AssumeRoleWithWebIdentity with the next step of `plan` — `503`, or `200:<s>`
    /// (credentials valid for s seconds); the last step repeats. Prints its port, counts requests in `count`.
    static let stub = """
    import sys, http.server, datetime, os
    plan, key, secret, count = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
    seen = [0]
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", "0")))
            step = plan[min(seen[0], len(plan) - 1)]
            seen[0] += 1
            open(count, "w").write(str(seen[0]))
            if step == "503":
                body = b"<ErrorResponse><Error><Code>ServiceUnavailable</Code><Message>try again</Message></Error></ErrorResponse>"
                self.send_response(503)
            elif step == "idp":
                body = b"<ErrorResponse><Error><Code>IDPCommunicationError</Code><Message>the identity provider did not answer</Message></Error></ErrorResponse>"
                self.send_response(400)
            else:
                exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(step.split(":")[1]))).strftime("%Y-%m-%dT%H:%M:%SZ")
                body = (f"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{key}</AccessKeyId>"
                        f"<SecretAccessKey>{secret}</SecretAccessKey><SessionToken>tok</SessionToken><Expiration>{exp}</Expiration>"
                        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>").encode()
                self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    server = http.server.HTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """

    var directory = ""
    var sts: ScriptedEndpoint?

    override func setUp() async throws {
        directory = try TestServers.temporaryDirectory("sts")
    }

    override func tearDown() async throws {
        // SIGKILL: a test runner's blocked SIGTERM is inherited by its children.
        sts?.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts the stub; the chain it feeds (web identity, nothing else to fall back on).
    func chain(plan: String) throws -> CredentialChain {
        try "a.jwt.token".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        let env = ProcessInfo.processInfo.environment
        let endpoint = try ScriptedEndpoint(script: Self.stub, at: directory + "/sts.py", arguments: [
            plan, env["AWS_ACCESS_KEY_ID"] ?? "devredshift", env["AWS_SECRET_ACCESS_KEY"] ?? "devredshift-secret", directory + "/count"])
        sts = endpoint
        return CredentialChain(region: "us-east-1", environment: [
            "AWS_WEB_IDENTITY_TOKEN_FILE": directory + "/token", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/etl",
            "AWS_ENDPOINT_URL_STS": endpoint.url, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ], transport: HTTPTransport(lanes: 1))
    }

    var requests: Int { Int((try? String(contentsOfFile: directory + "/count", encoding: .utf8)) ?? "0") ?? 0 }

    func testAFailedRenewalIsRetriedByTheRequestThatNeedsIt() async throws {
        let (endpoint, bucket) = try TestServers.requireS3()
        let transport = HTTPTransport(lanes: 1)
        let credentials = try chain(plan: "503,200:3600")
        let client = S3Client(settings: S3Settings(region: "us-east-1", endpoint: endpoint), credentials: credentials, transport: transport)
        let key = TestServers.uniqueName("sts") + "/object"
        try await client.putObject(bucket, key: key, bytes: Array("x".utf8))
        try await client.deleteObject(bucket, key: key)
        XCTAssertEqual(requests, 2, "STS asked again after its 503")
    }

    /// STS answers 400 IDPCommunicationError when the identity provider did not answer it in time; the AWS SDKs
    /// retry it. It used to be taken as a refusal: no credentials, the stream failed.
    func testAnIdentityProviderThatDidNotAnswerIsRetried() async throws {
        let (endpoint, bucket) = try TestServers.requireS3()
        let credentials = try chain(plan: "idp,200:3600")
        let client = S3Client(settings: S3Settings(region: "us-east-1", endpoint: endpoint), credentials: credentials, transport: HTTPTransport(lanes: 1))
        let key = TestServers.uniqueName("sts") + "/object"
        try await client.putObject(bucket, key: key, bytes: Array("x".utf8))
        try await client.deleteObject(bucket, key: key)
        XCTAssertEqual(requests, 2, "STS asked again after IDPCommunicationError")
    }

    func testCredentialsStillValidOutliveAFailedRenewal() async throws {
        // Valid for 4 minutes: due for renewal (five minutes before expiry), and STS fails from then on.
        let credentials = try chain(plan: "200:240,503")
        let first = try await credentials.credentials()
        let second = try await credentials.credentials()
        XCTAssertEqual(second.accessKeyID, first.accessKeyID, "the credentials in hand, while they last")
        XCTAssertEqual(requests, 2, "a renewal was tried")
    }

    /// COPY and UNLOAD carry the credentials for their whole run (Redshift fails them if they expire meanwhile):
    /// twenty minutes left is enough to sign a request, not to hand to an UNLOAD.
    func testStatementsGetCredentialsWithAHalfHourLeft() async throws {
        let credentials = try chain(plan: "200:1200,200:3600")
        _ = try await credentials.credentials()
        _ = try await credentials.credentials()
        XCTAssertEqual(requests, 1, "20 minutes left: good for signing")
        let long = try await credentials.credentials(validFor: 1800)
        XCTAssertEqual(requests, 2, "renewed for a statement")
        XCTAssertGreaterThan(long.expiration?.timeIntervalSinceNow ?? 0, 3000)
    }
}
