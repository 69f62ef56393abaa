import Foundation
import S3
import TestSupport
import XCTest

/// Faults of the AWS endpoints themselves, against scripted ones: the instance metadata service failing for a
/// moment, and S3 refusing a request signed by a clock more than 15 minutes off.
final class AWSEndpointFaultTests: XCTestCase {
    /// One file, two roles: an instance metadata service (IMDSv2: token, role list, role credentials) whose role
    /// list answers 503 first, and an S3 endpoint that accepts every PUT — except to bucket `skewed`, whose clock
    /// is an hour ahead: a request whose X-Amz-Date is more than 15 minutes from it is refused (403
    /// RequestTimeTooSkewed, as S3), and the refusals are counted in the file `refusals`. The role's credentials
    /// expire 45 minutes after the service's clock (an hour ahead); their deliveries are counted in `refusals.creds`.
    static let stub = """
    import sys, http.server, datetime, json
    refusals, key, secret = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = {"roles": 0, "refused": 0}
    AHEAD = datetime.timedelta(hours=1)
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def reply(self, status, body, kind="text/plain"):
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_PUT(self):
            self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/latest/api/token":
                return self.reply(200, b"imds-token")
            if not self.path.startswith("/skewed/"):
                return self.reply(200, b"")
            now = datetime.datetime.now(datetime.timezone.utc) + AHEAD
            signed = datetime.datetime.strptime(self.headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            if abs((now - signed).total_seconds()) > 900:
                body = ("<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message>"
                        f"<RequestTime>{signed.strftime('%Y%m%dT%H%M%SZ')}</RequestTime><ServerTime>{now.strftime('%Y-%m-%dT%H:%M:%SZ')}</ServerTime>"
                        "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>").encode()
                seen["refused"] += 1
                open(refusals, "w").write(str(seen["refused"]))
                return self.reply(403, body, "application/xml")
            self.reply(200, b"")
        def do_GET(self):
            if self.headers.get("x-aws-ec2-metadata-token") != "imds-token":
                return self.reply(401, b"")
            if self.path == "/latest/meta-data/iam/security-credentials/":
                seen["roles"] += 1
                return self.reply(503, b"") if seen["roles"] == 1 else self.reply(200, b"etl-role")
            if self.path == "/latest/meta-data/iam/security-credentials/etl-role":
                seen["creds"] = seen.get("creds", 0) + 1
                open(refusals + ".creds", "w").write(str(seen["creds"]))
                exp = (datetime.datetime.now(datetime.timezone.utc) + AHEAD + datetime.timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
                return self.reply(200, json.dumps({"Code": "Success", "AccessKeyId": key, "SecretAccessKey": secret,
                                                   "Token": "tok", "Expiration": exp}).encode())
            self.reply(404, b"")
    server = http.server.HTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """

    var directory = ""
    var endpoint: ScriptedEndpoint?

    override func setUp() async throws {
        directory = try TestServers.temporaryDirectory("aws-endpoints")
    }

    override func tearDown() async throws {
        endpoint?.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts the stub; its base URL.
    func startStub() throws -> String {
        let stub = try ScriptedEndpoint(script: Self.stub, at: directory + "/stub.py", arguments: [directory + "/refusals", "AKSTUB", "stub-secret"])
        endpoint = stub
        return stub.url
    }

    /// A 503 from the metadata service's role list used to read as "no instance role": no credentials at all,
    /// and the stream failed for good. It is retried, as any endpoint's 5xx.
    func testAnInstanceMetadataServiceFailingForAMomentIsRetried() async throws {
        let base = try startStub()
        let chain = CredentialChain(region: "us-east-1", environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": base, "HOME": "/nonexistent"],
                                    transport: HTTPTransport(lanes: 1))
        let client = S3Client(settings: S3Settings(region: "us-east-1", endpoint: base), credentials: chain, transport: HTTPTransport(lanes: 1))
        try await client.putObject("bucket", key: "object", bytes: Array("x".utf8))
        let source = try await client.credentialSource()
        XCTAssertTrue(source.contains("etl-role"), source)
    }

    /// S3 refuses a request signed more than 15 minutes from its own clock. The AWS SDKs then sign with the
    /// server's time (from the refusal); mongoshift failed every request until someone fixed the machine's clock.
    func testAClockFarFromS3sIsCorrectedFromItsRefusal() async throws {
        let base = try startStub()
        let chain = CredentialChain(region: "us-east-1", environment: ["AWS_ACCESS_KEY_ID": "AKSTUB", "AWS_SECRET_ACCESS_KEY": "stub-secret",
                                                                       "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"],
                                    transport: HTTPTransport(lanes: 1))
        let client = S3Client(settings: S3Settings(region: "us-east-1", endpoint: base), credentials: chain, transport: HTTPTransport(lanes: 1))
        try await client.putObject("skewed", key: "first", bytes: Array("x".utf8))
        try await client.putObject("skewed", key: "second", bytes: Array("y".utf8))
        let refusals = try String(contentsOfFile: directory + "/refusals", encoding: .utf8)
        XCTAssertEqual(refusals, "1", "the offset learnt from the first refusal is kept for the next request")
    }

    /// Temporary credentials carry their expiry in the service's time. With this machine's clock an hour behind,
    /// credentials with 45 minutes left looked good for 1 h 45 min: a COPY or UNLOAD handed them for its hour
    /// failed half-way. Once S3's refusal has told the offset, expiry is judged by the service's clock.
    func testCredentialExpiryIsJudgedByTheServicesClockOnceKnown() async throws {
        let base = try startStub()
        let chain = CredentialChain(region: "us-east-1", environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": base, "HOME": "/nonexistent"],
                                    transport: HTTPTransport(lanes: 1))
        let client = S3Client(settings: S3Settings(region: "us-east-1", endpoint: base), credentials: chain, transport: HTTPTransport(lanes: 1))
        try await client.putObject("skewed", key: "object", bytes: Array("x".utf8))
        func deliveries() throws -> String { try String(contentsOfFile: directory + "/refusals.creds", encoding: .utf8) }
        XCTAssertEqual(try deliveries(), "1")
        _ = try await chain.credentials(validFor: 1800)
        XCTAssertEqual(try deliveries(), "1", "45 minutes left by the service's clock: good for half an hour")
        _ = try await chain.credentials(validFor: 3600)
        XCTAssertEqual(try deliveries(), "2", "45 minutes left by the service's clock: renewed for an hour's statement")
    }
}
