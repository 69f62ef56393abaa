import Foundation

/// The standard AWS credential chain (docs/S3.md, "Credentials"), in the order the AWS SDKs use:
///
/// 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`);
/// 2. web identity — `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (Kubernetes service accounts), exchanged at
///    STS with `AssumeRoleWithWebIdentity`;
/// 3. the shared files' profile (`AWS_PROFILE`, else `default`): `~/.aws/credentials`, `~/.aws/config`
///    (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`);
/// 4. container credentials (ECS, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` /
///    `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`;
/// 5. the EC2 instance role through IMDSv2 (unless `AWS_EC2_METADATA_DISABLED=true`).
///
/// A named profile in the configuration skips the environment. Temporary credentials are cached and renewed
/// five minutes before they expire.
public actor CredentialChain {
    public enum Choice: Sendable {
        case standard
        case profile(String)
    }

    let choice: Choice
    let environment: [String: String]
    let transport: HTTPTransport
    let region: String
    private var cached: AWSCredentials?
    /// Seconds the AWS services' clock is ahead of this machine's, once a refusal told it (`adjustClock`):
    /// temporary credentials' expiry is in the service's time.
    private var clockOffset: TimeInterval = 0

    public init(_ choice: Choice = .standard, region: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                transport: HTTPTransport) {
        self.choice = choice
        self.environment = environment
        self.transport = transport
        self.region = region
    }

    /// Credentials valid for at least `validFor` seconds where the source can give that much (renewed otherwise).
    /// Signing needs five minutes; a COPY or UNLOAD that carries them needs them for the whole statement.
    public func credentials(validFor: Double = AWSCredentials.renewalMargin) async throws -> AWSCredentials {
        if let cached, cached.isValid(for: validFor, at: now) { return cached }
        do {
            let found = try await resolve()
            cached = found
            return found
        } catch {
            // A renewal that fails keeps the credentials in hand while they are still good for the use (as the AWS
            // SDKs do): a minute to sign a request, half the asked validity for a statement that carries them.
            // The next call tries again.
            let needed = validFor > AWSCredentials.renewalMargin ? validFor / 2 : 60
            if let cached, cached.isValid(for: needed, at: now) { return cached }
            throw error
        }
    }

    /// The service's time now, as far as this chain knows it.
    private var now: Date { Date().addingTimeInterval(clockOffset) }

    /// Learns how far the AWS services' clock is from this machine's (S3's `RequestTimeTooSkewed`).
    public func adjustClock(by offset: TimeInterval) { clockOffset = offset }

    /// Forgets the cached credentials (after the service refused them as expired).
    public func invalidate() { cached = nil }

    /// Credentials read afresh from their source when they carry no expiry (the environment, a profile whose
    /// session token another tool may rotate in its file); the ones in hand when that read fails for a moment.
    public func current(validFor: Double) async throws -> AWSCredentials {
        let held = try await credentials(validFor: validFor)
        guard held.expiration == nil else { return held }
        do {
            let fresh = try await resolve()
            cached = fresh
            return fresh
        } catch {
            return held
        }
    }

    private func resolve() async throws -> AWSCredentials {
        if case .profile(let name) = choice {
            guard let found = try SharedProfiles(environment: environment).credentials(profile: name) else {
                throw S3Error(.credentialsUnavailable, operation: "credentials", message: "profile \(name) has no aws_access_key_id / aws_secret_access_key in \(SharedProfiles(environment: environment).paths)")
            }
            return found
        }
        if let key = environment["AWS_ACCESS_KEY_ID"], !key.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
            return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
                                  source: "environment (AWS_ACCESS_KEY_ID)")
        }
        if let tokenFile = environment["AWS_WEB_IDENTITY_TOKEN_FILE"], let role = environment["AWS_ROLE_ARN"] {
            return try await webIdentity(tokenFile: tokenFile, role: role)
        }
        let named = environment["AWS_PROFILE"] ?? environment["AWS_DEFAULT_PROFILE"]
        let profile = named ?? "default"
        let profiles = SharedProfiles(environment: environment)
        if let found = try profiles.credentials(profile: profile) { return found }
        // A profile asked for by name that is not there is an error (as in the AWS SDKs), not a cue to sign as
        // whatever role the machine has — except `default`, which images set without any files.
        if named != nil, profile != "default", !profiles.exists(profile) {
            throw S3Error(.credentialsUnavailable, operation: "credentials", message: "AWS_PROFILE: no profile \(profile) in \(profiles.paths)")
        }
        if environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] != nil || environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != nil {
            return try await container()
        }
        if environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() != "true" {
            if let found = try await instanceRole() { return found }
        }
        throw S3Error(.credentialsUnavailable, operation: "credentials",
                      message: "no AWS credentials found (looked at: environment, web identity, profile \(profile), container, instance metadata)")
    }

    // MARK: web identity

    private func webIdentity(tokenFile: String, role: String) async throws -> AWSCredentials {
        let source = "web identity (\(role))"
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else {
            throw S3Error(.credentialsUnavailable, operation: "AssumeRoleWithWebIdentity", credentialSource: source,
                          message: "cannot read AWS_WEB_IDENTITY_TOKEN_FILE \(tokenFile)")
        }
        let session = environment["AWS_ROLE_SESSION_NAME"] ?? "mongoshift-\(Int(Date().timeIntervalSince1970))"
        let endpoint = environment["AWS_ENDPOINT_URL_STS"] ?? { let r = environment["AWS_REGION"] ?? region; return "https://sts.\(r).\(AWSDomain.of(region: r))" }()
        let form = [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", role),
                    ("RoleSessionName", session), ("WebIdentityToken", token)]
            .map { "\(SigV4Signer.encode($0.0, keepSlash: false))=\(SigV4Signer.encode($0.1, keepSlash: false))" }.joined(separator: "&")
        let response = try await Self.fetch(HTTPRequest(method: "POST", url: endpoint.hasSuffix("/") ? endpoint : endpoint + "/",
                                                        headers: [("content-type", "application/x-www-form-urlencoded")],
                                                        body: .bytes(Array(form.utf8))), transport, "AssumeRoleWithWebIdentity", source)
        let xml = String(decoding: response.body, as: UTF8.self)
        guard response.status == 200, let key = XMLText.first("AccessKeyId", in: xml), let secret = XMLText.first("SecretAccessKey", in: xml) else {
            let awsCode = XMLText.first("Code", in: xml)
            throw S3Error(Self.failureCode(status: response.status, awsCode: awsCode), operation: "AssumeRoleWithWebIdentity", credentialSource: source,
                          status: response.status, awsCode: awsCode, message: XMLText.first("Message", in: xml) ?? "STS answered \(response.status)")
        }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: XMLText.first("SessionToken", in: xml),
                              expiration: XMLText.first("Expiration", in: xml).flatMap(Self.parseISO8601), source: source)
    }

    // MARK: container

    private func container() async throws -> AWSCredentials {
        let url = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"].map { "http://169.254.170.2" + $0 }
            ?? environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"]!
        var headers: [(String, String)] = []
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
           let token = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            headers.append(("authorization", token))
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
            headers.append(("authorization", token))
        }
        let source = "container credentials (\(Self.hostOf(url)))"
        let response = try await Self.fetch(HTTPRequest(method: "GET", url: url, headers: headers, timeout: 5), transport, "credentials", source)
        return try Self.parseCredentialDocument(response, source: source)
    }

    // MARK: instance metadata (IMDSv2)

    private func instanceRole() async throws -> AWSCredentials? {
        let base = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "http://169.254.169.254"
        let tokenResponse: HTTPResponse
        do {
            tokenResponse = try await transport.perform(HTTPRequest(method: "PUT", url: base + "/latest/api/token",
                                                                    headers: [("x-aws-ec2-metadata-token-ttl-seconds", "21600")], timeout: 2))
        } catch {
            return nil  // not on EC2 (or the metadata service is unreachable): the chain ends here
        }
        // Any answer but 200 to the token request ends the chain (IMDS disabled, or a proxy answering for an
        // address that is not there off EC2); only once the service has answered is its 5xx a passing failure.
        guard tokenResponse.status == 200 else { return nil }
        let token = String(decoding: tokenResponse.body, as: UTF8.self)
        let auth = [("x-aws-ec2-metadata-token", token)]
        let source = "instance metadata (IMDSv2)"
        let roles = try await Self.fetch(HTTPRequest(method: "GET", url: base + "/latest/meta-data/iam/security-credentials/", headers: auth, timeout: 2),
                                         transport, "credentials", source)
        // No role attached answers 404: the chain ends. A 5xx or a throttle passes: tried again, not "no role".
        try Self.throwIfPassing(roles, source: source)
        guard roles.status == 200, let role = String(decoding: roles.body, as: UTF8.self).split(separator: "\n").first.map(String.init) else { return nil }
        let response = try await Self.fetch(HTTPRequest(method: "GET", url: base + "/latest/meta-data/iam/security-credentials/" + role,
                                                        headers: auth, timeout: 2), transport, "credentials", source)
        return try Self.parseCredentialDocument(response, source: "instance profile \(role) (IMDSv2)")
    }

    /// Throws the transient error of an endpoint's throttle or 5xx answer; returns for any other.
    static func throwIfPassing(_ response: HTTPResponse, source: String) throws {
        let code = failureCode(status: response.status, awsCode: nil)
        guard code == .throttled || code == .server else { return }
        throw S3Error(code, operation: "credentials", credentialSource: source, status: response.status,
                      message: "the credentials endpoint answered \(response.status)")
    }

    /// A credentials endpoint's answer; not reaching it is `unreachable` (transient: the request is tried again).
    static func fetch(_ request: HTTPRequest, _ transport: HTTPTransport, _ operation: String, _ source: String) async throws -> HTTPResponse {
        do {
            return try await transport.perform(request)
        } catch let error as HTTPTransportError {
            throw S3Error(.unreachable, operation: operation, credentialSource: source, message: error.description)
        }
    }

    /// Throttling and server errors of a credentials endpoint are transient (and STS's IDPCommunicationError:
    /// the identity provider did not answer it in time); anything else is a refusal.
    static func failureCode(status: Int, awsCode: String?) -> S3Error.Code {
        if status == 429 || awsCode == "Throttling" || awsCode == "ThrottlingException" { return .throttled }
        if status >= 500 || awsCode == "IDPCommunicationError" { return .server }
        return .credentialsUnavailable
    }

    /// The JSON document container and instance endpoints answer with.
    static func parseCredentialDocument(_ response: HTTPResponse, source: String) throws -> AWSCredentials {
        guard response.status == 200,
              let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let key = object["AccessKeyId"] as? String, let secret = object["SecretAccessKey"] as? String else {
            let code = response.status == 200 ? S3Error.Code.credentialsUnavailable : failureCode(status: response.status, awsCode: nil)
            throw S3Error(code, operation: "credentials", credentialSource: source, status: response.status,
                          message: "the credentials endpoint answered \(response.status) without AccessKeyId/SecretAccessKey")
        }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: object["Token"] as? String,
                              expiration: (object["Expiration"] as? String).flatMap(parseISO8601), source: source)
    }

    static func parseISO8601(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }

    static func hostOf(_ url: String) -> String {
        URLComponents(string: url)?.host ?? url
    }
}

/// `~/.aws/credentials` and `~/.aws/config` (INI): static keys of a profile. Credentials file sections are
/// `[name]`; config file sections `[profile name]` (and `[default]`). The credentials file wins.
struct SharedProfiles {
    let credentialsPath: String
    let configPath: String

    init(environment: [String: String]) {
        let home = environment["HOME"] ?? NSHomeDirectory()
        credentialsPath = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        configPath = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
    }

    var paths: String { "\(credentialsPath), \(configPath)" }

    /// Settings of profiles that get their credentials elsewhere, which mongoshift does not follow: such a
    /// profile is refused, never skipped (the chain would go on to sign as the machine's role).
    static let unsupportedSettings = ["role_arn", "credential_process", "sso_session", "sso_start_url", "sso_account_id", "web_identity_token_file"]

    func credentials(profile: String) throws -> AWSCredentials? {
        for (path, section) in sections(profile) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let values = Self.section(section, in: text)
            if let key = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] {
                return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: values["aws_session_token"],
                                      source: "profile \(profile) (\(path))")
            }
            if let setting = Self.unsupportedSettings.first(where: { values[$0] != nil }) {
                throw S3Error(.credentialsUnavailable, operation: "credentials",
                              message: "profile \(profile) (\(path)) gets its credentials by \(setting), which mongoshift does not follow: give the "
                                + "profile keys, or use the environment, web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), the container or the instance role")
            }
        }
        return nil
    }

    /// Whether either file has the profile's section.
    func exists(_ profile: String) -> Bool {
        sections(profile).contains { path, section in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
            return text.split(whereSeparator: \.isNewline).contains { $0.trimmingCharacters(in: .whitespaces) == "[\(section)]" }
        }
    }

    private func sections(_ profile: String) -> [(path: String, section: String)] {
        [(credentialsPath, profile), (configPath, profile == "default" ? "default" : "profile \(profile)")]
    }

    /// The `key = value` lines of `[name]`.
    static func section(_ name: String, in text: String) -> [String: String] {
        var current: String?
        var out: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard current == name, let eq = line.firstIndex(of: "=") else { continue }
            out[line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
