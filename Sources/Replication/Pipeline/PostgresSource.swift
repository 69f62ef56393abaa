import Logging
import PostgresClient

/// A lazily (re)connecting PostgreSQL/Redshift connection: a transient failure drops the connection and the
/// next use opens a fresh one.
public actor PostgresSource {
    /// The libpq URL (may hold a password: never log it unredacted).
    let url: String
    /// Statements every new session runs first (`SET …`).
    let sessionSettings: [String]
    private var connection: PostgresConnection?

    public init(url: String, sessionSettings: [String] = []) {
        self.url = url
        self.sessionSettings = sessionSettings
    }

    public func get() async throws -> PostgresConnection {
        if let connection { return connection }
        let fresh = try await PostgresConnection.connect(url)
        for setting in sessionSettings { _ = try await fresh.execute(setting) }
        connection = fresh
        return fresh
    }

    public func invalidate() {
        connection = nil
    }

    /// Runs `body` on the connection under `policy`, reconnecting after failures the policy retries.
    public nonisolated func run<T: Sendable>(_ policy: RetryPolicy, logger: Logger, role: String = "source",
                                            _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await policy.run({
            let c = try await self.get()
            do {
                return try await body(c)
            } catch {
                if policy.retries(error) { await self.invalidate() }
                throw error
            }
        }, report: RetryReport(logger: logger, what: role))
    }
}
