import ArgumentParser
import Foundation
import Logging
import Replication
import ServiceLifecycle

/// Carries a result from a task to the metrics thread that waits for it.
final class HealthBox: @unchecked Sendable {
    // @unchecked: written by one task before the semaphore is signalled, read after.
    var failed = false
}

extension Mongoshift {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Always-on replication of every stream until SIGTERM/SIGINT.",
            discussion: """
            Snapshots what needs it, then tails and applies all streams concurrently. On SIGTERM or SIGINT each stream \
            finishes the batch in flight, persists its position and the process exits 0.
            """)

        @OptionGroup var options: GlobalOptions

        @Option(help: "Serve Prometheus /metrics and /healthz here (HOST:PORT; default 127.0.0.1:9187; 'off' disables).")
        var metricsAddr: String?

        static let defaultMetricsAddress = "127.0.0.1:9187"

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let state = try StateStore(directory: config.stateDirectory)
                if metricsAddr != "off" {
                    let address = metricsAddr ?? Self.defaultMetricsAddress
                    let names = streams.map(\.name)
                    let server = MetricsServer(registry: MetricsServer.bootstrap()) {
                        // Healthy while no stream has failed (idle streams are healthy).
                        let store = try? StateStore(directory: config.stateDirectory, readOnly: true)
                        let failed = names.filter { name in
                            let box = HealthBox()
                            let done = DispatchSemaphore(value: 0)
                            Task { box.failed = (try? await store?.stream(name))??.phase == .failed; done.signal() }
                            done.wait()
                            return box.failed
                        }
                        return failed.isEmpty ? (true, "ok") : (false, "failed streams: \(failed.joined(separator: ", "))")
                    }
                    do {
                        try server.start(address: address)
                        logger.info("serving metrics", metadata: ["address": "http://\(address)/metrics"])
                    } catch where metricsAddr == nil {
                        // The default port is taken (another replicator on this host): replicate anyway.
                        logger.warning("metrics not served", metadata: ["reason": "\(error)"])
                    }
                }
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
                for stream in streams {
                    let context = try StreamContext(config: config, stream: stream, state: state, logger: logger, progress: ProgressLine.shared)
                    switch stream.direction {
                    case .redshiftToMongo:
                        let service = RedshiftToMongoService(context: context, redshift: config.redshift!, mongo: config.mongo!)
                        // A stream that stops (failed permanently) must not stop the others.
                        services.append(.init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore,
                                              serviceName: "stream \(stream.name)"))
                    case .mongoToRedshift:
                        let service = MongoToRedshiftService(context: context, redshift: config.redshift!, mongo: config.mongo!)
                        services.append(.init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore,
                                              serviceName: "stream \(stream.name)"))
                    }
                }
                guard !services.isEmpty else { throw ValidationError("no stream to run") }
                logger.info("mongoshift run starting", metadata: ["streams": "\(streams.map(\.name).joined(separator: ","))"])
                let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                              cancellationSignals: [], logger: logger))
                try await group.run()
                logger.info("mongoshift run stopped cleanly")
            } catch {
                throw ErrorReporting.fail(error)
            }
        }
    }
}
