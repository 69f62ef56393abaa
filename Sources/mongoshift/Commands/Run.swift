import ArgumentParser
import Foundation
import Synchronization
import Logging
import MongoClient
import Replication
import ServiceLifecycle
import ShiftCore
import StateStore

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
                let lock = try await options.lockStateDirectory(config, command: "run")
                defer { withExtendedLifetime(lock) {} }
                let state = try await StateStore.open(config)
                // The staging bucket is checked before any stream depends on it: one line and exit 3 if it fails.
                if S3Probe.needsS3(streams, config.redshift), let staging = config.redshift?.s3 { try await S3Probe.bucketAccess(staging) }
                let failures = FailedStreams(total: streams.count)
                if metricsAddr != "off" {
                    let address = metricsAddr ?? Self.defaultMetricsAddress
                    let server = MetricsServer(registry: MetricsServer.bootstrap()) {
                        // Healthy while no stream of this process has failed (idle streams are healthy).
                        let failed = failures.names
                        return failed.isEmpty ? (true, "ok") : (false, "failed streams: \(failed.sorted().joined(separator: ", "))")
                    }
                    do {
                        try server.start(address: address)
                        logger.info("serving metrics", metadata: ["address": "http://\(address)/metrics"])
                    } catch where metricsAddr == nil {
                        // The default port is taken (another replicator on this host): replicate anyway.
                        logger.warning("metrics not served", metadata: ["reason": "\(error)"])
                    }
                }
                var services: [StreamService] = []
                for stream in streams {
                    let context = try StreamContext(config: config, stream: stream, state: state, logger: logger, progress: ProgressLine.shared)
                    let (redshift, mongo) = (config.redshift!, config.mongo!)
                    let service: LeasedStreamService
                    switch stream.direction {
                    case .redshiftToMongo:
                        service = LeasedStreamService(context: context, owner: { RedshiftToMongoService(context: $0, redshift: redshift, mongo: mongo) },
                                                      helper: { helping in
                            _ = try await RedshiftToMongoService(context: helping, redshift: redshift, mongo: mongo).snapshot(spoolOnly: false)
                        })
                    case .mongoToRedshift:
                        service = LeasedStreamService(context: context, owner: { MongoToRedshiftService(context: $0, redshift: redshift, mongo: mongo) },
                                                      helper: { helping in
                            _ = try await MongoToRedshiftService(context: helping, redshift: redshift, mongo: mongo).snapshot(spoolOnly: false)
                        })
                    }
                    services.append(StreamService(stream: stream.name, leased: service, failures: failures, logger: logger))
                }
                guard !services.isEmpty else { throw ValidationError("no stream to run") }
                logger.info("mongoshift run starting", metadata: ["streams": "\(streams.map(\.name).joined(separator: ","))"])
                // One service for every stream: a ServiceGroup shuts its services down one after the other, and
                // SIGTERM must reach every stream at once (each finishes its batch in parallel).
                let all = ServiceGroupConfiguration.ServiceConfiguration(service: StreamsService(streams: services),
                                                                         failureTerminationBehavior: .gracefullyShutdownGroup)
                let group = ServiceGroup(configuration: .init(services: [all], gracefulShutdownSignals: [.sigterm, .sigint],
                                                              cancellationSignals: [], logger: logger))
                try await group.run()
                logger.info("mongoshift run stopped cleanly")
            } catch let error as EveryStreamFailed {
                FileHandle.standardError.write(Data("mongoshift: error: \(Redaction.redact(error.description))\n".utf8))
                throw Exit.internal
            } catch {
                throw ErrorReporting.fail(error)
            }
        }
    }
}

/// Streams that stopped on a permanent error in this run.
/// The streams of this `run` that stopped on a permanent error; read by `/healthz` from the metrics thread.
final class FailedStreams: Sendable {
    let total: Int
    private let failed = Mutex<[String]>([])

    init(total: Int) { self.total = total }

    var names: [String] { failed.withLock { $0 } }

    /// Records a failed stream; true when it was the last one still running.
    func add(_ name: String) -> Bool {
        failed.withLock { names in
            names.append(name)
            return names.count >= total
        }
    }
}

/// Every stream has stopped on a permanent error: `run` has nothing left to do (exit 4).
struct EveryStreamFailed: Error, CustomStringConvertible {
    var streams: [String]
    var description: String {
        "every stream has failed (\(streams.sorted().joined(separator: ", "))): the reasons are in the log and in `mongoshift lag`"
    }
}

/// Every stream of `run`, side by side: graceful shutdown reaches them all at once. A stream that stops (failed
/// permanently) does not stop the others; the last one does (`EveryStreamFailed`).
struct StreamsService: Service {
    let streams: [StreamService]

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for stream in streams { group.addTask { try await stream.run() } }
            try await group.waitForAll()
        }
    }
}

/// One stream of `run`: a failure ends this stream only, unless it was the last one running.
struct StreamService: Service {
    let stream: String
    let leased: LeasedStreamService
    let failures: FailedStreams
    let logger: Logger

    func run() async throws {
        do {
            try await leased.run()
        } catch is CancellationError {
            return
        } catch {
            if failures.add(stream) { throw EveryStreamFailed(streams: failures.names) }
            logger.error("stream stopped; the others go on", metadata: ["stream": "\(stream)", "error": "\(error)"])
        }
    }
}
