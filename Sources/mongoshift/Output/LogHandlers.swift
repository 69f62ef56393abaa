import BSON
import Foundation
import Logging
import MongoClient
import ShiftCore

enum LogFormat: String, CaseIterable {
    case auto, text, json
}

/// One log line per event on stderr: `2026-11-21T10:00:00Z warning [orders] message key=value` on a terminal,
/// a JSON object per line otherwise. Values pass through redaction (no password reaches a log).
struct ShiftLogHandler: LogHandler {
    let label: String
    let json: Bool
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func bootstrap(format: LogFormat, level: Logger.Level) {
        let json = format == .json || (format == .auto && isatty(STDERR_FILENO) == 0)
        LoggingSystem.bootstrap { label in
            var handler = ShiftLogHandler(label: label, json: json)
            handler.logLevel = level
            return handler
        }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let time = ISODate.format(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) ?? ""
        var line = ""
        if json {
            line = #"{"time": ""# + time + #"", "level": ""# + event.level.rawValue + #"", "message": "#
            ExtendedJSON.writeString(Redaction.redact("\(event.message)"), into: &line)
            for (key, value) in all.sorted(by: { $0.key < $1.key }) {
                line += ", "
                ExtendedJSON.writeString(key, into: &line)
                line += ": "
                ExtendedJSON.writeString(Redaction.redact("\(value)"), into: &line)
            }
            line += "}\n"
        } else {
            let stream = all.removeValue(forKey: "stream").map { " [\($0)]" } ?? ""
            line = "\(time) \(event.level.rawValue)\(stream) \(Redaction.redact("\(event.message)"))"
            for (key, value) in all.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(Redaction.redact("\(value)"))" }
            line += "\n"
        }
        ProgressLine.shared.write(log: line)
    }
}
