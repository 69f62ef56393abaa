import ArgumentParser
import BSON
import Foundation
import ShiftCore
import Replication
import StateStore

extension Mongoshift {
    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Moves one stream to a resume point: a new snapshot, now, a cluster time or resume token (Mongo), a watermark (Redshift).",
            discussion: """
            --to snapshot | now | time:<ISO-8601> | token:<resume token> (Mongo → Redshift) | watermark:<value> \
            (Redshift → Mongo). Asks for confirmation on a terminal (--yes for scripts); refuses while a worker holds \
            the stream. Changes only the stream's position in the state store; `lag` shows the last reset. \
            Exit 1 when refused.
            """)

        @OptionGroup var options: GlobalOptions

        @Option(help: "snapshot, now, time:<ISO-8601>, token:<resume token> or watermark:<value>.")
        var to: String

        @Flag(help: "Do not ask for confirmation.")
        var yes = false

        func validate() throws {
            guard options.streams.count == 1 else { throw ValidationError("reset takes exactly one --stream NAME") }
            guard ResetTarget(parsing: to) != nil else {
                throw ValidationError("--to \"\(to)\": use snapshot, now, time:<ISO-8601 e.g. 2026-12-04T10:00:00Z>, token:<resume token> or watermark:<value>")
            }
        }

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                let stream = streams[0], target = ResetTarget(parsing: to)!
                // A reset positions a stream that has state: with none here (a relative `state:` read from another
                // directory, a mistyped path), saying "never run → …" and creating an empty store would change
                // nothing the daemon reads.
                do {
                    _ = try await StateStore.open(config, readOnly: true)
                } catch let error as StateStoreError where error.code == .missing {
                    let whereFrom = config.stateURL == nil && !config.stateDirectory.hasPrefix("/")
                        ? " (`state: \(config.stateDirectory)` is read from the current directory, \(FileManager.default.currentDirectoryPath))" : ""
                    throw StreamReset.Refusal(description: "\(error.message)\(whereFrom): nothing to reset")
                }
                let lock: WorkerLock
                do {
                    lock = try await options.lockStateDirectory(config, command: "reset")
                } catch let held as WorkerLock.Held {
                    throw StreamReset.Refusal(description: "stream \(stream.name) is running on this machine, or another process holds its state directory (\(held.holder)): stop it before a reset")
                }
                defer { withExtendedLifetime(lock) {} }
                let state = try await StateStore.open(config)
                if let holder = try await Self.liveHolder(state, stream.name) {
                    throw StreamReset.Refusal(description: "stream \(stream.name) is running on \(holder): stop it (or wait for its lease to expire) before a reset")
                }
                let current = try await state.stream(stream.name)
                let position = try await StreamReset.resolve(target, stream: stream, config: config, logger: logger)
                let was = current.map { "\($0.phase.rawValue), applied \($0.appliedPosition?.description ?? "nothing")" } ?? "never run"
                let becomes = position.map { "tail from \($0)" } ?? "a new snapshot at the next run"
                print("stream \(stream.name): \(was) → \(becomes)")
                if !yes {
                    guard isatty(STDIN_FILENO) != 0 else {
                        throw ValidationError("stdin is not a terminal: add --yes to confirm the reset")
                    }
                    print("reset? [y/N] ", terminator: "")
                    // The operator's answer may take minutes: waited for on a thread of its own.
                    let answer = try await IOThread.detached(name: "confirm") { readLine() }
                    guard let answer, ["y", "yes"].contains(answer.lowercased()) else {
                        print("not reset")
                        return
                    }
                }
                // The prompt may have waited: a worker started meanwhile wins.
                if let holder = try await Self.liveHolder(state, stream.name) {
                    throw StreamReset.Refusal(description: "stream \(stream.name) is running on \(holder): not reset")
                }
                _ = try await state.ensureStream(stream.name, direction: stream.direction.rawValue)
                guard let lease = try await state.acquireLease(stream.name, duration: config.leaseDuration) else {
                    throw StreamReset.Refusal(description: "stream \(stream.name) was taken by a worker meanwhile: not reset")
                }
                let note = "\(ISODate.format(seconds: Int64(Date().timeIntervalSince1970))) by \(Self.operatorName()): --to \(target) (was \(was))"
                do {
                    if let position {
                        try await state.repositionStream(stream.name, to: position, note: note, lease: lease)
                    } else {
                        // Lowering a large collection's versions can outlast a lease: it is renewed meanwhile, so no
                        // worker starts the stream while the guard is down.
                        func forgetVersions() async throws {
                            try await LeaseHeartbeat.holding(lease, state: state, duration: config.leaseDuration) {
                                try await StreamReset.forgetVersions(stream: stream, config: config)
                            }
                        }
                        do {
                            try await forgetVersions()
                        } catch is LeaseHeartbeat.Lost {
                            throw StreamReset.Refusal(description: "stream \(stream.name) was taken by a worker during the reset: not reset")
                        }
                        try await state.resetStream(stream.name, note: note, lease: lease)
                        // Helpers copying the old plan's partitions (they hold no lease) may have applied pages while
                        // the versions were lowered; with the plan forgotten, no page of it starts a write any more.
                        do {
                            try await forgetVersions()
                        } catch {
                            throw StreamReset.Refusal(description: "stream \(stream.name) was reset, but lowering its documents' versions once more failed (\(error)): documents a helper wrote meanwhile may keep theirs; run the reset again")
                        }
                    }
                } catch {
                    try? await state.releaseLease(lease)
                    throw error
                }
                try? await state.releaseLease(lease)
                logger.notice("stream reset", metadata: ["stream": "\(stream.name)", "to": "\(target)", "position": "\(position?.description ?? "snapshot")",
                                                         "by": "\(Self.operatorName())", "was": "\(was)"])
                print("stream \(stream.name) reset: \(becomes)")
            } catch let refusal as StreamReset.Refusal {
                FileHandle.standardError.write(Data("mongoshift: \(refusal)\n".utf8))
                throw Exit.thresholdFailed
            } catch {
                throw ErrorReporting.fail(error)
            }
        }

        /// The worker holding the stream's lease now, if any (an expired lease holds nothing).
        static func liveHolder(_ state: StateStore, _ stream: String) async throws -> String? {
            guard let lease = try await state.leases().first(where: { $0.stream == stream }),
                  lease.expiresAt > Date().timeIntervalSince1970 else { return nil }
            return "\(lease.holder) (epoch \(lease.epoch), lease until \(ISODate.format(seconds: Int64(lease.expiresAt))))"
        }

        static func operatorName() -> String {
            let env = ProcessInfo.processInfo.environment
            let user = env["SUDO_USER"] ?? env["USER"] ?? env["LOGNAME"] ?? "uid \(getuid())"
            return "\(user)@\(ProcessInfo.processInfo.hostName)"
        }
    }
}
