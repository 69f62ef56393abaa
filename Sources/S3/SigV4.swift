import Foundation

/// AWS Signature Version 4 for S3 (docs/S3.md): the canonical request, the string to sign, the derived key and
/// the `Authorization` header. Pure: the caller passes the clock, so it is unit-tested against AWS's own examples.
/// Paths and queries are encoded here once, and the same strings go into the request URL, so what is signed is
/// what is sent.
public struct SigV4Signer: Sendable {
    public let region: String
    public let service: String

    public init(region: String, service: String = "s3") {
        self.region = region
        self.service = service
    }

    /// The empty body's hash, for GET/HEAD/DELETE.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Headers to add to the request: `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (temporary
    /// credentials) and `Authorization`. `headers` are the request's other headers to sign (e.g. `range`,
    /// `content-md5`, `content-type`); `host` includes `:port` when the port is not the scheme's default.
    public func sign(method: String, host: String, path: String, query: String, headers: [(String, String)],
                     payloadHash: String, credentials: AWSCredentials, date: Date) -> [(String, String)] {
        let stamp = Self.timestamp(date)
        let day = String(stamp.prefix(8))
        var signed: [(String, String)] = [("host", host), ("x-amz-content-sha256", payloadHash), ("x-amz-date", stamp)]
        if let token = credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        for (name, value) in headers { signed.append((name.lowercased(), value.trimmingCharacters(in: .whitespaces))) }
        signed.sort { $0.0 < $1.0 }
        let canonicalHeaders = signed.map { "\($0.0):\($0.1)\n" }.joined()
        let signedNames = signed.map(\.0).joined(separator: ";")
        let canonicalRequest = [method, path, query, canonicalHeaders, signedNames, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, Digest.hex(Digest.sha256(Array(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = Digest.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = Digest.hmacSHA256(key: key, Array(part.utf8)) }
        let signature = Digest.hex(Digest.hmacSHA256(key: key, Array(stringToSign.utf8)))
        var out = signed.filter { $0.0 != "host" && !headers.map { $0.0.lowercased() }.contains($0.0) }
        out.append(("authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"))
        return out
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ n: Int?) -> String { let v = n ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(c.year ?? 1970)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))Z"
    }

    /// RFC 3986 unreserved characters stay; everything else is `%XX` (upper-case hex). `/` stays in paths only.
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved[Int(byte)] || (keepSlash && byte == 0x2F) {
                out.append(byte)
            } else {
                out.append(0x25)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let unreserved: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for b in Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~".utf8) { table[Int(b)] = true }
        return table
    }()

    /// The canonical query: every parameter `key=value` (valueless ones `key=`), encoded, sorted by key then value.
    public static func canonicalQuery(_ parameters: [(String, String)]) -> String {
        let encoded: [(key: String, value: String)] = parameters.map { (encode($0.0, keepSlash: false), encode($0.1, keepSlash: false)) }
        let sorted = encoded.sorted { (a, b) -> Bool in a.key == b.key ? a.value < b.value : a.key < b.key }
        return sorted.map { (p) -> String in p.key + "=" + p.value }.joined(separator: "&")
    }
}
