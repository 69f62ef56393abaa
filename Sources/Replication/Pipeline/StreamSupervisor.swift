import Logging
import ServiceLifecycle
import StateStore

/// Runs one stream's pipeline until it ends or graceful shutdown begins, the same way for both directions:
/// after a spool recovery or a rewind the pipeline restarts from the state store; `recover` may absorb an error
/// (history lost → re-snapshot) and ask for a restart; a lost lease ends the pipeline on this worker (the lease
/// service competes for the stream again); an error the policy retries (a lost connection, a refused login in the
/// daemon) restarts it after a backoff; any other error marks this stream failed, with the reason, and ends it
/// with `.streamFailed` while the other streams go on.
struct StreamSupervisor {
    let context: StreamContext
    let policy: RetryPolicy

    /// Keeps `mongoshift_lag_seconds` (or `_lag_units`) current — the same skew-free measure as `mongoshift lag`
    /// — and `mongoshift_lag_measured` saying whether it could be measured, until shutdown. A lag nobody can
    /// measure must not read as a fresh one.
    static func monitorLag(_ context: StreamContext, every period: Duration = .seconds(10),
                           measure: @Sendable () async -> LagMeasure?) async throws {
        while !Task.isShuttingDownGracefully {
            switch await measure() {
            case .seconds(let seconds)?:
                context.metrics.lagSeconds.record(seconds)
                context.metrics.lagMeasured.record(1)
            case .units(let units)?:
                context.metrics.lagUnits.record(Double(units))
                context.metrics.lagMeasured.record(1)
            case nil:
                context.metrics.lagMeasured.record(0)
            }
            try await pause(period)
        }
    }

    enum Recovery {
        /// Handled: run the pipeline again.
        case restart
        /// Stop this stream with this reason.
        case fail(String)
    }

    /// `recover` handles errors it knows (nil: not one of its own, the stream fails with the error).
    func run(recover: (Error) async throws -> Recovery? = { _ in nil }, _ pipeline: () async throws -> Void) async throws {
        var attempt = 0
        var lastRetried: String?
        while !Task.isShuttingDownGracefully {
            do {
                try await pipeline()
                return
            } catch let error where policy.retries(error) && !Task.isShuttingDownGracefully {
                // Reported once per kind of failure (the state store keeps it for `lag`); retried with backoff.
                attempt += 1
                let description = "\(error)"
                if description != lastRetried {
                    context.logger.error("stream cannot start, retrying until it can", metadata: ["error": "\(description)"])
                    try? await context.state.recordError(context.name, description)
                    lastRetried = description
                }
                try await pause(policy.delay(attempt: attempt))
            } catch let error where Self.needsRestart(error) {
                // A corrupt segment was discarded and its range rewound (or another rewind happened): restart
                // from the state store.
                context.logger.warning("restarting stream from the state store", metadata: ["reason": "\(error)"])
                try await pause(.seconds(1))
            } catch is CancellationError {
                return
            } catch let error where Self.isFenced(error) {
                throw error
            } catch {
                if Task.isShuttingDownGracefully && policy.retries(error) { return }
                let reason: String
                let recovery: Recovery?
                do {
                    recovery = try await recover(error)
                } catch let recoveryError where policy.retries(recoveryError) && !Task.isShuttingDownGracefully {
                    // The recovery itself met a passing failure (the state store away): the error comes back on the
                    // next attempt and is recovered then.
                    attempt += 1
                    context.logger.warning("recovery interrupted, retrying", metadata: ["error": "\(recoveryError)"])
                    try await pause(policy.delay(attempt: attempt))
                    continue
                }
                switch recovery {
                case .restart: continue
                case .fail(let why): reason = why
                case nil: reason = "\(error)"
                }
                try await fail(reason)
                throw ReplicationError(.streamFailed, stream: context.name, reason)
            }
        }
    }

    static func needsRestart(_ error: Error) -> Bool {
        if let e = error as? ReplicationError { return e.code == .spool }
        if let e = error as? StateStoreError { return e.code == .rewound }
        return false
    }

    /// This worker lost the stream's lease: not a failure of the stream (another worker runs it).
    static func isFenced(_ error: Error) -> Bool {
        if let e = error as? ReplicationError { return e.code == .fenced }
        if let e = error as? StateStoreError { return e.code == .fenced }
        return false
    }

    /// Marks the stream failed under this worker's lease; throws `.fenced` when another worker holds it now (the
    /// lease service competes again instead of ending the stream here).
    func fail(_ message: String) async throws {
        do {
            try await context.state.failStream(context.name, reason: message, lease: context.lease)
        } catch let error as StateStoreError where error.code == .fenced {
            context.logger.warning("stream error after another worker took the stream: not marked failed", metadata: ["error": "\(message)"])
            throw error
        } catch {
            context.logger.warning("the stream's failure could not be recorded", metadata: ["error": "\(error)"])
        }
        context.metrics.errors.increment()
        context.logger.error("stream failed; other streams continue", metadata: ["error": "\(message)"])
    }
}
