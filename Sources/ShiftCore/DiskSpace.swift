import Foundation

/// Free space on a file system, for back-pressure before a write would fail.
public enum DiskSpace {
    /// Bytes an unprivileged writer may still use on the file system holding `path`; nil when it cannot be read.
    public static func available(at path: String) -> Int64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }
}
