import ArgumentParser
import BSON
import Foundation
import Replication
import ShiftCore
import StateStore

extension Mongoshift {
    struct Lag: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "How far each stream is behind, for people and for alerting.",
            discussion: """
            Reads the state store without blocking a running `run`. Lag is computed from source-clock values only. \
            A table on a terminal, JSON otherwise (or with --json). With --max-lag, exits 1 when any stream is over \
            the threshold, failed, or cannot be measured; streams with an integer watermark lag in units \
            (--max-lag-units).
            """)

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Print JSON (the default when stdout is not a terminal).")
        var json = false

        @Flag(help: "Print the human table even when stdout is not a terminal.")
        var table = false

        @Option(help: "Exit 1 if any stream lags more than this (e.g. 5m).")
        var maxLag: String?

        @Option(help: ArgumentHelp("Exit 1 if a stream with an integer watermark lags more than this many units (its lag is in sequence numbers, not time).",
                                   valueName: "units"))
        var maxLagUnits: Int64?

        func validate() throws {
            if let maxLag, ConfigLoader.parseDuration(maxLag) == nil { throw ValidationError("--max-lag: \"\(maxLag)\" is not a duration (500ms, 10s, 5m, 1h)") }
            if let maxLagUnits, maxLagUnits < 0 { throw ValidationError("--max-lag-units: must be 0 or more") }
        }

        func run() async throws {
            do {
                let (config, streams, logger) = try options.prepare()
                // No state yet: every stream is new. A store that cannot be read is an error, never "nothing ran".
                let state: StateStore?
                do {
                    state = try await StateStore.open(config, readOnly: true)
                } catch let error as StateStoreError where error.code == .missing {
                    state = nil
                }
                let report = await LagReport.measure(config: config, streams: streams, state: state, logger: logger)
                if json || (!table && isatty(STDOUT_FILENO) == 0) {
                    print(Self.json(report))
                } else {
                    print(Self.table(report))
                }
                if maxLag != nil || maxLagUnits != nil {
                    let unjudged = report.filter { $0.lagUnits != nil }.map(\.name)
                    if maxLagUnits == nil && !unjudged.isEmpty {
                        FileHandle.standardError.write(Data("mongoshift: \(unjudged.joined(separator: ", ")) lag in units (integer watermarks), not judged by --max-lag: add --max-lag-units\n".utf8))
                    }
                    let untailed = Set(streams.filter { $0.direction == .redshiftToMongo && $0.watermark == nil }.map(\.name))
                    let over = Self.over(report, threshold: maxLag.flatMap { ConfigLoader.parseDuration($0)?.seconds }, maxUnits: maxLagUnits, untailed: untailed)
                    if !over.isEmpty {
                        let limits = [maxLag, maxLagUnits.map { "\($0) units" }].compactMap { $0 }.joined(separator: " / ")
                        FileHandle.standardError.write(Data("mongoshift: lag over \(limits) (or unknown/failed) for: \(over.map(\.name).joined(separator: ", "))\n".utf8))
                        throw Exit.thresholdFailed
                    }
                }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }

        /// The streams `--max-lag` / `--max-lag-units` report: failed, or behind by more than the threshold of
        /// their kind — seconds, or units for integer watermarks (judged only when `maxUnits` is given) — with an
        /// unknown lag counted as behind; except `untailed` streams (Redshift → Mongo without a watermark: a
        /// snapshot, no tail) once copied, which have no lag to be behind by.
        static func over(_ report: [StreamLag], threshold: Double?, maxUnits: Int64? = nil, untailed: Set<String>) -> [StreamLag] {
            report.filter { s in
                if s.phase == "failed" { return true }
                if untailed.contains(s.name) && s.phase == "streaming" { return false }
                if let units = s.lagUnits { return maxUnits.map { units > $0 } ?? false }
                guard let seconds = s.lagSeconds else { return true }
                return threshold.map { seconds > $0 } ?? false
            }
        }

        static func json(_ report: [StreamLag]) -> String {
            let streams: [[String: Any]] = report.map { s in
                var d: [String: Any] = [
                    "name": s.name, "direction": s.direction, "phase": s.phase,
                    "lag_seconds": s.lagSeconds ?? NSNull(), "lag_units": s.lagUnits ?? NSNull(), "applied_position": s.appliedPosition ?? NSNull(),
                    "source_head": s.sourceHead ?? NSNull(), "spool_segments": s.spoolSegments, "spool_rows": s.spoolRows,
                    "spool_bytes": s.spoolBytes, "deadletters": s.deadLetters, "rows_applied": s.rowsApplied,
                    "last_error": s.lastError.map(Redaction.redact) ?? NSNull(), "last_error_at": s.lastErrorAt.map(Self.isoTime) ?? NSNull(),
                    "owner": s.owner ?? NSNull(), "last_reset": s.lastReset ?? NSNull(),
                    "reconcile_refused": s.reconcileRefused ?? NSNull(),
                ]
                if let e = s.probeError { d["probe_error"] = Redaction.redact(e) }
                if let age = s.resumeTokenAgeSeconds { d["resume_token_age_seconds"] = age }
                if let window = s.oplogWindowSeconds { d["oplog_window_seconds"] = window }
                d["held_by"] = s.heldBy.map { h -> Any in
                    ["pid": h.pid, "xid": h.xid ?? NSNull(), "since": h.since, "age_seconds": h.ageSeconds] as [String: Any]
                } ?? NSNull()
                return d
            }
            let data = try! JSONSerialization.data(withJSONObject: ["streams": streams], options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }

        /// `2026-12-04T22:10:37.125Z` for an epoch time in seconds.
        static func isoTime(_ epochSeconds: Double) -> String {
            ISODate.format(milliseconds: Int64((epochSeconds * 1000).rounded())) ?? String(epochSeconds)
        }

        /// A change stream's resume-token age against the oplog window (DESIGN.md §4): how close it is to falling off.
        static func tokenAge(_ s: StreamLag) -> String {
            guard s.resumeTokenAgeSeconds != nil || s.oplogWindowSeconds != nil else { return "-" }
            let age = s.resumeTokenAgeSeconds.map { ProgressLine.formatDuration($0) } ?? "?"
            return age + " / " + (s.oplogWindowSeconds.map { ProgressLine.formatDuration($0) } ?? "?")
        }

        static func table(_ report: [StreamLag]) -> String {
            let header = ["STREAM", "DIRECTION", "PHASE", "OWNER", "LAG", "APPLIED", "SOURCE HEAD", "TOKEN AGE / OPLOG", "HELD BY",
                          "SPOOL seg/rows/bytes", "DLQ", "LAST ERROR"]
            var rows = [header]
            for s in report {
                rows.append([s.name, s.direction, s.phase, s.owner ?? "-", s.lagSeconds.map { String(format: "%.1fs", $0) } ?? s.lagUnits.map { "\($0) units" } ?? "-",
                             s.appliedPosition ?? "-", s.sourceHead ?? (s.probeError == nil ? "-" : "unreachable"), Self.tokenAge(s),
                             s.heldBy.map { "pid \($0.pid)\($0.xid.map { " xid \($0)" } ?? "") open \(Int($0.ageSeconds)) s" } ?? "-",
                             "\(s.spoolSegments)/\(s.spoolRows)/\(s.spoolBytes)", String(s.deadLetters),
                             Redaction.redact(s.lastError.map { e in s.lastErrorAt.map { "\(Self.isoTime($0)) \(e)" } ?? e } ?? s.probeError ?? "-")])
            }
            let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
            let lines = rows.map { r in
                r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            }
            let notes = report.flatMap { s in
                [s.lastReset.map { "\(s.name): last reset \($0)" }, s.reconcileRefused.map { "\(s.name): hard-delete reconcile refused: \($0)" }].compactMap { $0 }
            }
            return (lines + notes).joined(separator: "\n")
        }
    }
}
