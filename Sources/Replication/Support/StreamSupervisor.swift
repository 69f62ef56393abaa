import Logging
import ServiceLifecycle

/// Runs one stream's pipeline until it ends or graceful shutdown begins, the same way for both directions:
/// after a spool recovery the pipeline restarts from the state store; `recover` may absorb an error (history
/// lost → re-snapshot) and ask for a restart; any other permanent error marks this stream failed, with the
/// reason, while the other streams go on.
struct StreamSupervisor {
    let context: StreamContext

    /// Keeps `mongoshift_lag_seconds` current (the same skew-free measure as `mongoshift lag`) until shutdown.
    static func monitorLag(_ context: StreamContext, every period: Duration = .seconds(10)) async throws {
        while !Task.isShuttingDownGracefully {
            let report = await LagProbe.measure(config: context.config, streams: [context.stream], logger: context.logger)
            if let lag = report.first?.lagSeconds { context.metrics.lagSeconds.record(lag) }
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
        while !Task.isShuttingDownGracefully {
            do {
                try await pipeline()
                return
            } catch let error as ReplicationError where error.code == .spool {
                // A corrupt segment was discarded and its range rewound: restart from the state store.
                context.logger.warning("restarting stream after spool recovery", metadata: ["reason": "\(error.message)"])
                try await pause(.seconds(1))
            } catch is CancellationError {
                return
            } catch {
                if Task.isShuttingDownGracefully && RetryPolicy.isTransient(error) { return }
                switch try await recover(error) {
                case .restart: continue
                case .fail(let reason): await fail(reason)
                case nil: await fail("\(error)")
                }
                return
            }
        }
    }

    func fail(_ message: String) async {
        context.metrics.errors.increment()
        context.logger.error("stream failed; other streams continue", metadata: ["error": "\(message)"])
        try? await context.state.recordError(context.name, message)
        try? await context.state.setPhase(context.name, .failed)
    }
}
