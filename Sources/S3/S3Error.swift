import ShiftCore

/// A failed S3 (or credential) step: what was attempted, on which bucket/key, with which credentials (their
/// source, never the secret), and what the service said. One line (docs/S3.md, "Errors").
public struct S3Error: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        public static let noSuchBucket = Code(raw: "bucket does not exist")
        public static let accessDenied = Code(raw: "access denied")
        public static let invalidCredentials = Code(raw: "credentials refused")
        public static let notFound = Code(raw: "object not found")
        public static let unreachable = Code(raw: "endpoint unreachable")
        public static let credentialsUnavailable = Code(raw: "no usable credentials")
        public static let throttled = Code(raw: "throttled")
        public static let server = Code(raw: "server error")
        public static let failed = Code(raw: "request failed")
        public static let local = Code(raw: "local file error")
    }

    public var code: Code
    /// The S3 API call or step: "PutObject", "ListObjectsV2", "AssumeRoleWithWebIdentity", …
    public var operation: String
    public var bucket: String?
    public var key: String?
    public var credentialSource: String?
    public var status: Int?
    public var awsCode: String?
    public var message: String

    public init(_ code: Code, operation: String, bucket: String? = nil, key: String? = nil, credentialSource: String? = nil,
                status: Int? = nil, awsCode: String? = nil, message: String) {
        self.code = code
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.credentialSource = credentialSource
        self.status = status
        self.awsCode = awsCode
        self.message = message
    }

    /// Worth another attempt: throttling, 5xx, timeouts and dropped connections.
    public var isTransient: Bool { code == .throttled || code == .server || code == .unreachable }

    public var description: String {
        var target = ""
        if let bucket { target = " s3://\(bucket)" + (key.map { "/\($0)" } ?? "") }
        var text = "S3 \(operation)\(target): \(code)"
        var said: [String] = []
        if let awsCode { said.append(awsCode) }
        if let status { said.append("HTTP \(status)") }
        if !message.isEmpty { said.append(message) }
        if !said.isEmpty { text += " (\(said.joined(separator: ", ")))" }
        if let credentialSource { text += " [credentials: \(credentialSource)]" }
        return text
    }

    /// Classifies an S3 error answer.
    static func from(status: Int, body: [UInt8], operation: String, bucket: String?, key: String?, credentials: String?) -> S3Error {
        let xml = String(decoding: body, as: UTF8.self)
        let aws = XMLText.first("Code", in: xml)
        let message = XMLText.first("Message", in: xml) ?? ""
        let code: Code = switch (status, aws) {
        case (_, "NoSuchBucket"): .noSuchBucket
        case (_, "NoSuchKey"), (404, nil): .notFound
        case (_, "InvalidAccessKeyId"), (_, "SignatureDoesNotMatch"), (_, "ExpiredToken"), (_, "InvalidToken"), (_, "TokenRefreshRequired"): .invalidCredentials
        case (_, "AccessDenied"), (403, _): .accessDenied
        case (_, "SlowDown"), (429, _), (503, _): .throttled
        case (_, "RequestTimeout"), (_, "InternalError"), (500..., _): .server
        default: .failed
        }
        return S3Error(code, operation: operation, bucket: bucket, key: key, credentialSource: credentials, status: status, awsCode: aws,
                       message: message)
    }
}
