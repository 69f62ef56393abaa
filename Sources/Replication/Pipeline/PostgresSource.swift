import Logging
import PostgresClient

/// A lazily (re)connecting PostgreSQL/Redshift connection: a transient failure drops the connection and the
/// next use opens a fresh one.
public actor PostgresSource {
    /// The libpq URL (may hold a password: never log it unredacted).
    let url: String
    private var connection: PostgresConnection?

    public init(url: String) {
        self.url = url
    }

    public func get() async throws -> PostgresConnection {
        if let connection { return connection }
        let fresh = try await PostgresConnection.connect(url)
        connection = fresh
        return fresh
    }

    public func invalidate() {
        connection = nil
    }

    /// Runs `body` on the connection under `policy`, reconnecting after transient failures.
    public nonisolated func run<T: Sendable>(_ policy: RetryPolicy, logger: Logger,
                                            _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await policy.run({
            let c = try await self.get()
            do {
                return try await body(c)
            } catch {
                if RetryPolicy.isTransient(error) { await self.invalidate() }
                throw error
            }
        }, onRetry: { error, attempt, wait in
            logger.warning("source error, retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)", "wait_s": "\(wait.seconds)"])
        })
    }
}
