import ShiftCore

/// A spool failure: the file it concerns and why.
public struct SpoolError: Error, CustomStringConvertible, Sendable, TransientClassifying {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        /// Truncated, bit-flipped, wrong magic/version, bad checksum: re-extract, never half-read.
        public static let corrupt = Code(raw: "corrupt segment")
        public static let io = Code(raw: "I/O error")
        /// The spool's filesystem is full (ENOSPC/EDQUOT): back-pressure, not failure — wait for space.
        public static let noSpace = Code(raw: "no space left on the spool's disk")
        public static let compression = Code(raw: "compression error")
        public var description: String { raw }
    }
    public var code: Code
    public var path: String
    public var reason: String
    public init(code: Code, path: String, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(code): \(reason)" }

    /// A full disk and a failed read or write may clear (space freed, a file descriptor closed, a disk remounted):
    /// retried. A corrupt segment will not: it is discarded and its range extracted again.
    public var isTransient: Bool { code == .noSpace || code == .io }
}
