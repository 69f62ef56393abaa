import Foundation

/// One set of AWS credentials and where they came from. `description` names the source, never the secret.
public struct AWSCredentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// Temporary credentials expire; nil = long-lived keys.
    public var expiration: Date?
    /// Where they came from, for error messages: "environment (AWS_ACCESS_KEY_ID)", "profile prod (~/.aws/credentials)", …
    public var source: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil, source: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String { "\(source), key \(accessKeyID.prefix(4))…" }

    /// Refresh this long before expiry (AWS hands out temporary credentials for ≥ 15 minutes).
    public static let renewalMargin: Double = 300

    func isValid(for seconds: Double, at now: Date) -> Bool {
        guard let expiration else { return true }
        return expiration.timeIntervalSince(now) > seconds
    }
}
