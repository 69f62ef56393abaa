/// A configuration problem, located: `file:line: message`. Exit code 2.
struct ConfigError: Error, CustomStringConvertible {
    var file: String
    var line: Int?
    var message: String
    var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}
