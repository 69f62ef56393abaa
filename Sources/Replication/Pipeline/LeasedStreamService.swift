import Logging
import ServiceLifecycle
import StateStore

/// Runs one stream on this worker only while the worker holds the stream's lease (docs/ARCHITECTURE.md, "Several workers").
///
/// Every worker configured with a stream runs one of these. The lease holder runs the whole pipeline (the
/// direction's service) and renews the lease every third of its duration; if a renewal finds the lease gone
/// (expired and taken, a newer epoch), the pipeline is cancelled at once and the worker competes again. The
/// others help with the stream's snapshot (claiming partitions) and retry the lease until its holder stops
/// renewing. A pipeline refused by the fence (a newer epoch wrote first) is a lost lease too: the stream stops here,
/// not everywhere. On a clean shutdown the lease is released so another worker takes over without waiting.
public struct LeasedStreamService: Service {
    let context: StreamContext
    let owner: @Sendable (StreamContext) -> any Service
    let helper: @Sendable (StreamContext) async throws -> Void

    /// `owner` builds the direction's service for a leased context; `helper` copies snapshot partitions.
    public init(context: StreamContext, owner: @escaping @Sendable (StreamContext) -> any Service,
                helper: @escaping @Sendable (StreamContext) async throws -> Void) {
        self.context = context
        self.owner = owner
        self.helper = helper
    }

    public func run() async throws {
        let duration = context.config.leaseDuration
        var waiting = false
        while !Task.isShuttingDownGracefully {
            let lease: Lease?
            do {
                lease = try await context.state.acquireLease(context.name, duration: duration)
            } catch where RetryPolicy.isTransient(error) {
                context.logger.warning("state store unreachable: lease not acquired, retrying", metadata: ["error": "\(error)"])
                try await pause(duration / 3)
                continue
            }
            guard let lease else {
                if !waiting {
                    context.logger.info("stream owned by another worker: helping with its snapshot, standing by")
                    waiting = true
                }
                var helping = context
                helping.role = .helper
                do { try await helper(helping) } catch is CancellationError { return } catch {
                    context.logger.warning("snapshot help failed", metadata: ["error": "\(error)"])
                }
                try await pause(duration / 3)
                continue
            }
            waiting = false
            context.logger.info("lease acquired: running the stream", metadata: ["epoch": "\(lease.epoch)", "worker": "\(lease.holder)"])
            var owned = context
            owned.lease = lease
            owned.role = .owner
            let lost: Bool
            do {
                lost = try await runHolding(owned, lease: lease, duration: duration)
            } catch {
                // The stream failed here (recorded in the state store): give it up.
                try? await context.state.releaseLease(lease)
                throw error
            }
            if lost {
                context.metrics.errors.increment()
                context.logger.error("lease lost: stopped applying; competing for the stream again", metadata: ["epoch": "\(lease.epoch)"])
                continue
            }
            try? await context.state.releaseLease(lease)
            return
        }
    }

    /// Runs the pipeline beside the heartbeat. Returns true when the lease was lost (pipeline cancelled).
    private func runHolding(_ owned: StreamContext, lease: Lease, duration: Duration) async throws -> Bool {
        let service = owner(owned)
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await service.run()
                } catch where StreamSupervisor.isFenced(error) {
                    return true
                }
                return false
            }
            // The heartbeat renews until the pipeline has ended, graceful shutdown included (the last batch may
            // take a while): it only ends by finding the lease gone, or cancelled once the pipeline is done.
            group.addTask {
                while true {
                    try await Task.sleep(for: duration / 3)
                    // A store error is not a lost lease: the apply-time check (`holdsLease`) still fences.
                    if let renewed = try? await owned.state.renewLease(lease, duration: duration), !renewed { return true }
                }
            }
            let lost = try await group.next() ?? false
            group.cancelAll()
            while let more = try? await group.next() { _ = more }
            return lost
        }
    }
}
