import Foundation
import Synchronization
import ShiftCore

/// Where and how to reach S3: the signing region, an endpoint (a local emulator, an S3-compatible store, a VPC
/// endpoint) or AWS's own, and the addressing style.
public struct S3Settings: Sendable {
    public var region: String
    /// `http(s)://host[:port]`; nil = `https://s3.<region>.amazonaws.com` (`.com.cn` in China).
    public var endpoint: String?
    /// Path-style URLs (`endpoint/bucket/key`); virtual-hosted (`bucket.endpoint/key`) otherwise.
    public var pathStyle: Bool
    /// Attempts per request (throttling, 5xx, timeouts), with exponential backoff. Default 5.
    public var attempts = 5
    /// Objects above this are uploaded in parts of `partBytes`. Defaults 64 MiB / 32 MiB.
    public var multipartThreshold: Int64 = 64 << 20
    public var partBytes: Int64 = 32 << 20

    public init(region: String, endpoint: String? = nil, pathStyle: Bool? = nil) {
        self.region = region
        self.endpoint = endpoint.map(Self.normalized)
        self.pathStyle = pathStyle ?? (endpoint != nil)
    }

    /// Without a trailing slash or the scheme's default port: libcurl leaves `:443`/`:80` out of the Host header
    /// it sends, so a signature over a host with it would never match.
    static func normalized(_ endpoint: String) -> String {
        var e = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        for (scheme, port) in [("https://", ":443"), ("http://", ":80")] where e.hasPrefix(scheme) && e.hasSuffix(port) {
            e.removeLast(port.count)
        }
        return e
    }

    /// (scheme://authority, host header, canonical path) for a bucket/key. A bucket name with dots goes path-style
    /// on AWS's own endpoint: the wildcard certificate of `*.s3.<region>.amazonaws.com` covers one label only.
    public func address(bucket: String, key: String?) -> (String, String, String) {
        let keyPath = key.map { "/" + SigV4Signer.encode($0, keepSlash: true) } ?? "/"
        let endpoint = endpoint ?? "https://s3.\(region).\(AWSDomain.of(region: region))"
        let scheme = endpoint.hasPrefix("http://") ? "http://" : "https://"
        let authority = String(endpoint.dropFirst(scheme.count))
        if pathStyle || (self.endpoint == nil && bucket.contains(".")) {
            return (scheme + authority, authority, "/" + SigV4Signer.encode(bucket, keepSlash: false) + (key == nil ? "" : keyPath))
        }
        let host = "\(bucket).\(authority)"
        return (scheme + host, host, keyPath)
    }
}

/// AWS's domain for a region: China's partition (`cn-…`) has its own.
enum AWSDomain {
    static func of(region: String) -> String { region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com" }
}

public struct S3Object: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public init(key: String, size: Int64) {
        self.key = key
        self.size = size
    }
}

/// An S3 client over libcurl with its own SigV4 signing (docs/S3.md): put (single or multipart, streamed from a
/// file), get (into memory or a file), delete (one or a thousand at a time), list, head bucket. Each request is
/// retried on throttling, 5xx and dropped connections; credentials come from the chain and are renewed before
/// they expire (or when S3 calls them expired).
public final class S3Client: Sendable {
    public let settings: S3Settings
    public let credentials: CredentialChain
    let transport: HTTPTransport
    let signer: SigV4Signer
    /// Seconds S3's clock is ahead of this machine's, learnt from a RequestTimeTooSkewed refusal (S3 refuses a
    /// request signed more than 15 minutes off); requests are signed with the corrected time, as the AWS SDKs do.
    private let clockOffset = Mutex<TimeInterval>(0)

    public init(settings: S3Settings, credentials: CredentialChain, transport: HTTPTransport) {
        self.settings = settings
        self.credentials = credentials
        self.transport = transport
        self.signer = SigV4Signer(region: settings.region)
    }

    // MARK: operations

    public func headBucket(_ bucket: String) async throws {
        _ = try await send("HeadBucket", "HEAD", bucket: bucket, key: nil)
    }

    public func putObject(_ bucket: String, key: String, bytes: [UInt8], contentType: String? = nil) async throws {
        var headers: [(String, String)] = [("content-md5", Data(Digest.md5(bytes)).base64EncodedString())]
        if let contentType { headers.append(("content-type", contentType)) }
        _ = try await send("PutObject", "PUT", bucket: bucket, key: key, headers: headers, body: .bytes(bytes),
                           payloadHash: Digest.hex(Digest.sha256(bytes)))
    }

    /// The hex SHA-256 of a file's range, read on a thread of its own (up to a part's 32 MiB of reading).
    static func fileHash(_ path: String, offset: Int64, length: Int64) async throws -> String {
        try await IOThread.detached(name: "s3-digest") { try Digest.hex(Digest.sha256(file: path, offset: offset, length: length)) }
    }

    /// Uploads a local file, streamed; in parts above `multipartThreshold`. Every byte is covered by the
    /// signature (the payload's SHA-256), so S3 rejects a corrupted upload.
    public func putObject(_ bucket: String, key: String, file path: String) async throws {
        let size = try Self.fileSize(path)
        if size <= settings.multipartThreshold {
            let hash = try await Self.fileHash(path, offset: 0, length: size)
            _ = try await send("PutObject", "PUT", bucket: bucket, key: key, body: .file(path: path, offset: 0, length: size), payloadHash: hash)
            return
        }
        let created = try await send("CreateMultipartUpload", "POST", bucket: bucket, key: key, query: [("uploads", "")])
        guard let upload = XMLText.first("UploadId", in: String(decoding: created.body, as: UTF8.self)) else {
            throw S3Error(.failed, operation: "CreateMultipartUpload", bucket: bucket, key: key, message: "no UploadId in the answer")
        }
        do {
            var etags: [String] = []
            var offset: Int64 = 0
            var part = 1
            while offset < size {
                let length = min(settings.partBytes, size - offset)
                let hash = try await Self.fileHash(path, offset: offset, length: length)
                let answer = try await send("UploadPart", "PUT", bucket: bucket, key: key, query: [("partNumber", String(part)), ("uploadId", upload)],
                                            body: .file(path: path, offset: offset, length: length), payloadHash: hash)
                etags.append(answer.headers["etag"] ?? "")
                offset += length
                part += 1
            }
            let xml = "<CompleteMultipartUpload>" + etags.enumerated().map {
                "<Part><PartNumber>\($0 + 1)</PartNumber><ETag>\(XMLText.escape($1))</ETag></Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            let done = try await send("CompleteMultipartUpload", "POST", bucket: bucket, key: key, query: [("uploadId", upload)],
                                      headers: [("content-type", "application/xml")], body: .bytes(body), payloadHash: Digest.hex(Digest.sha256(body)))
            // S3 may answer 200 with an error document when completion fails late.
            let text = String(decoding: done.body, as: UTF8.self)
            if text.contains("<Error>") {
                throw S3Error.from(status: 500, body: done.body, operation: "CompleteMultipartUpload", bucket: bucket, key: key, credentials: nil)
            }
        } catch {
            _ = try? await send("AbortMultipartUpload", "DELETE", bucket: bucket, key: key, query: [("uploadId", upload)])
            throw error
        }
    }

    public func getObject(_ bucket: String, key: String, limit: Int = 64 << 20) async throws -> [UInt8] {
        try await send("GetObject", "GET", bucket: bucket, key: key, sink: .memory(limit: limit)).body
    }

    /// Downloads an object into a local file; returns its size.
    @discardableResult
    public func download(_ bucket: String, key: String, to path: String) async throws -> Int64 {
        try await send("GetObject", "GET", bucket: bucket, key: key, sink: .file(path)).bytesReceived
    }

    public func deleteObject(_ bucket: String, key: String) async throws {
        _ = try await send("DeleteObject", "DELETE", bucket: bucket, key: key)
    }

    /// Deletes keys a thousand per request (S3's limit); missing keys are not an error.
    public func deleteObjects(_ bucket: String, keys: [String]) async throws {
        for start in stride(from: 0, to: keys.count, by: 1000) {
            let slice = keys[start..<min(start + 1000, keys.count)]
            let xml = "<Delete><Quiet>true</Quiet>" + slice.map { "<Object><Key>\(XMLText.escape($0))</Key></Object>" }.joined() + "</Delete>"
            let body = Array(xml.utf8)
            let answer = try await send("DeleteObjects", "POST", bucket: bucket, key: nil, query: [("delete", "")],
                                        headers: [("content-md5", Data(Digest.md5(body)).base64EncodedString()), ("content-type", "application/xml")],
                                        body: .bytes(body), payloadHash: Digest.hex(Digest.sha256(body)))
            let text = String(decoding: answer.body, as: UTF8.self)
            if let failed = XMLText.blocks("Error", in: text).first {
                throw S3Error(.failed, operation: "DeleteObjects", bucket: bucket, key: XMLText.all("Key", in: failed).first,
                              awsCode: XMLText.all("Code", in: failed).first, message: XMLText.all("Message", in: failed).first ?? "")
            }
        }
    }

    /// Every object under `prefix` (ListObjectsV2, `pageSize` keys per request).
    public func list(_ bucket: String, prefix: String, pageSize: Int = 1000) async throws -> [S3Object] {
        var out: [S3Object] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", String(pageSize))]
            if let token { query.append(("continuation-token", token)) }
            let answer = try await send("ListObjectsV2", "GET", bucket: bucket, key: nil, query: query)
            let xml = String(decoding: answer.body, as: UTF8.self)
            for block in XMLText.blocks("Contents", in: xml) {
                guard let key = XMLText.all("Key", in: block).first else { continue }
                out.append(S3Object(key: key, size: Int64(XMLText.all("Size", in: block).first ?? "0") ?? 0))
            }
            token = XMLText.first("IsTruncated", in: xml) == "true" ? XMLText.first("NextContinuationToken", in: xml) : nil
        } while token != nil
        return out
    }

    /// Deletes every object under `prefix`; returns how many there were.
    @discardableResult
    public func deletePrefix(_ bucket: String, prefix: String) async throws -> Int {
        let keys = try await list(bucket, prefix: prefix).map(\.key)
        if !keys.isEmpty { try await deleteObjects(bucket, keys: keys) }
        return keys.count
    }

    /// Where the credentials come from (for messages); resolves them.
    public func credentialSource() async throws -> String {
        try await credentials.credentials().source
    }

    // MARK: requests

    private func send(_ operation: String, _ method: String, bucket: String, key: String?, query: [(String, String)] = [],
                      headers: [(String, String)] = [], body: HTTPRequest.Body = .none, payloadHash: String = SigV4Signer.emptyPayloadHash,
                      sink: HTTPRequest.Sink = .memory(limit: 16 << 20)) async throws -> HTTPResponse {
        let (base, host, path) = settings.address(bucket: bucket, key: key)
        let canonicalQuery = SigV4Signer.canonicalQuery(query)
        let url = base + path + (canonicalQuery.isEmpty ? "" : "?" + canonicalQuery)
        var attempt = 0
        var refreshed = false
        var reclocked = false
        while true {
            attempt += 1
            let creds: AWSCredentials
            do {
                creds = try await credentials.credentials()
            } catch let failure as S3Error where failure.isTransient && attempt < settings.attempts {
                // The credentials endpoint (STS, container, instance metadata) failed for a moment: as any request.
                try await Task.sleep(for: .milliseconds(Int(Self.backoff(attempt: attempt) * 1000)))
                continue
            }
            let signed = signer.sign(method: method, host: host, path: path, query: canonicalQuery, headers: headers, payloadHash: payloadHash,
                                     credentials: creds, date: Date().addingTimeInterval(clockOffset.withLock { $0 }))
            let request = HTTPRequest(method: method, url: url, headers: headers + signed, body: body, sink: sink)
            let failure: S3Error
            do {
                let response = try await transport.perform(request)
                if (200..<300).contains(response.status) { return response }
                var body = response.body
                if case .file(let path) = sink { body = (try? Array(Data(contentsOf: URL(fileURLWithPath: path)).prefix(64 << 10))) ?? [] }
                failure = S3Error.from(status: response.status, body: body, operation: operation, bucket: bucket, key: key, credentials: creds.source)
                if failure.awsCode == "RequestTimeTooSkewed", !reclocked, let server = Self.serverTime(response, body: body) {
                    let offset = server.timeIntervalSinceNow
                    clockOffset.withLock { $0 = offset }
                    await credentials.adjustClock(by: offset)
                    reclocked = true
                    continue
                }
            } catch let e as HTTPTransportError {
                failure = S3Error(.unreachable, operation: operation, bucket: bucket, key: key, credentialSource: creds.source, message: e.description)
            }
            if failure.code == .invalidCredentials && !refreshed {
                // Temporary credentials may have been revoked or expired early, and a profile's session token
                // rotated in its file (aws-vault, saml2aws): fetch or read them again, once.
                await credentials.invalidate()
                refreshed = true
                continue
            }
            guard failure.isTransient, attempt < settings.attempts else { throw failure }
            try await Task.sleep(for: .milliseconds(Int(Self.backoff(attempt: attempt) * 1000)))
        }
    }

    /// S3's clock in a refusal: its `<ServerTime>`, else the response's `Date` header.
    static func serverTime(_ response: HTTPResponse, body: [UInt8]) -> Date? {
        if let time = XMLText.first("ServerTime", in: String(decoding: body, as: UTF8.self)).flatMap(CredentialChain.parseISO8601) { return time }
        guard let header = response.headers["date"] else { return nil }
        let format = DateFormatter()
        format.locale = Locale(identifier: "en_US_POSIX")
        format.timeZone = TimeZone(identifier: "GMT")
        format.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return format.date(from: header)
    }

    /// Seconds before attempt `attempt + 1`: exponential from 0.2 s, at most 8 s, with jitter.
    static func backoff(attempt: Int) -> Double {
        min(8.0, 0.2 * pow(2.0, Double(attempt - 1))) * Double.random(in: 0.5...1.0)
    }

    static func fileSize(_ path: String) throws -> Int64 {
        guard let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber else {
            throw S3Error(.local, operation: "read", message: "cannot stat \(path)")
        }
        return size.int64Value
    }
}
