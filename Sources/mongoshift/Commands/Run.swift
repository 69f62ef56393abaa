import ArgumentParser
import Foundation
import Logging
import Replication
import ServiceLifecycle

extension Mongoshift {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Always-on replication of every stream until SIGTERM/SIGINT.",
            discussion: """
            Snapshots what needs it, then tails and applies all streams concurrently. On SIGTERM or SIGINT each stream \
            finishes the batch in flight, persists its position and the process exits 0.
            """)

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let state = try StateStore(directory: config.stateDirectory)
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
