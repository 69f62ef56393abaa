import Foundation
import MongoClient
import PostgresClient
import XCTest

/// The dev servers integration tests run against. `.ci/run` always sets both variables; without them the
/// integration suites skip with the reason printed.
public enum TestServers {
    public static var postgresURL: String? { ProcessInfo.processInfo.environment["MONGOSHIFT_TEST_PG"] }
    public static var mongoURL: String? { ProcessInfo.processInfo.environment["MONGOSHIFT_TEST_MONGO"] }

    public static func requirePostgres() throws -> String {
        guard let url = postgresURL, !url.isEmpty else {
            print("skipping: MONGOSHIFT_TEST_PG is not set (start ops/dev-postgres/start or run .ci/run)")
            throw XCTSkip("MONGOSHIFT_TEST_PG is not set")
        }
        return url
    }

    /// The Redshift stand-in (ops/dev-redshift) and its statement log.
    public static func requireRedshift() throws -> (url: String, log: String) {
        let env = ProcessInfo.processInfo.environment
        guard let url = env["MONGOSHIFT_TEST_REDSHIFT"], !url.isEmpty, let log = env["MONGOSHIFT_TEST_REDSHIFT_LOG"] else {
            print("skipping: MONGOSHIFT_TEST_REDSHIFT is not set (ops/servers start exports it; run ops/test or .ci/run)")
            throw XCTSkip("MONGOSHIFT_TEST_REDSHIFT is not set")
        }
        return (url, log)
    }

    /// The S3 emulator beside the Redshift stand-in: endpoint and bucket (credentials are in AWS_* variables).
    public static func requireS3() throws -> (endpoint: String, bucket: String) {
        let env = ProcessInfo.processInfo.environment
        guard let endpoint = env["MONGOSHIFT_TEST_S3_ENDPOINT"], !endpoint.isEmpty, let bucket = env["MONGOSHIFT_TEST_S3_BUCKET"] else {
            print("skipping: MONGOSHIFT_TEST_S3_ENDPOINT is not set (ops/servers start exports it; run ops/test or .ci/run)")
            throw XCTSkip("MONGOSHIFT_TEST_S3_ENDPOINT is not set")
        }
        return (endpoint, bucket)
    }

    public static func requireMongo() throws -> String {
        guard let url = mongoURL, !url.isEmpty else {
            print("skipping: MONGOSHIFT_TEST_MONGO is not set (start ops/dev-mongo/start or run .ci/run)")
            throw XCTSkip("MONGOSHIFT_TEST_MONGO is not set")
        }
        return url
    }

    /// A name unique to this test run (tables, collections, databases, state directories).
    public static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
    }

    public static var repositoryRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    public static func temporaryDirectory(_ prefix: String) throws -> String {
        let path = NSTemporaryDirectory() + uniqueName(prefix)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

extension TestServers {
    /// A port for a listener the test starts itself (`--metrics-addr`): below the kernel's ephemeral range
    /// (32768–60999), so no client socket holds it, and free when picked.
    public static func listenerPort() -> Int {
        while true {
            let port = Int.random(in: 20_000...32_000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let bound = Socket.withAddress(port: port) { bind(fd, $0, $1) }
            close(fd)
            if bound == 0 { return port }
        }
    }
}

extension TestServers {
    /// A login role the dev server makes give its password (ops/dev-postgres: members of mongoshift_pw use scram),
    /// with read access to the public schema's tables.
    public static func createPasswordRole(_ connection: PostgresConnection, _ name: String, password: String) async throws {
        try await connection.execute("""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mongoshift_pw') THEN CREATE ROLE mongoshift_pw NOLOGIN; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '\(name)') THEN CREATE ROLE \(name) LOGIN IN ROLE mongoshift_pw; END IF;
            END $$;
            ALTER ROLE \(name) PASSWORD '\(password)';
            GRANT mongoshift_pw TO \(name);
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO \(name);
            """)
    }
}

/// IPv4 socket addresses for bind/connect.
public enum Socket {
    /// Calls `body` with `host:port` as a `sockaddr` and its length.
    public static func withAddress(host: String = "127.0.0.1", port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// A minimal HTTP/1.0 GET over a TCP socket (Foundation on Linux reads no http: URLs without FoundationNetworking).
public enum HTTPGet {
    /// `timeout`: seconds a read may wait for the answer (nil: forever).
    public static func body(host: String = "127.0.0.1", port: Int, path: String, timeout: Int? = nil) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if let timeout {
            var limit = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        guard Socket.withAddress(host: host, port: port, { connect(fd, $0, $1) }) == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard write(fd, request, request.count) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        return String(text[split.upperBound...])
    }
}
