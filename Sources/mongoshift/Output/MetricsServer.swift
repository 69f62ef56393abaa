import Foundation
import Metrics
import Prometheus
import Replication

/// `/metrics` (Prometheus text) and `/healthz` on a small HTTP/1.0 listener with its own thread (blocking
/// accept/read never touch the cooperative pool). Binds to loopback unless told otherwise.
final class MetricsServer: @unchecked Sendable {
    // @unchecked: `socketFD` is written once in `start` before the serving thread starts, then only read.
    private let registry: PrometheusCollectorRegistry
    private let health: @Sendable () -> (Bool, String)
    private var socketFD: Int32 = -1

    init(registry: PrometheusCollectorRegistry, health: @escaping @Sendable () -> (Bool, String)) {
        self.registry = registry
        self.health = health
    }

    /// Makes swift-metrics record into a fresh Prometheus registry (once per process).
    static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// `host:port`; throws a message for the operator when the address is unusable.
    func start(address: String) throws {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw MetricsServerError("--metrics-addr must be HOST:PORT, not \(address)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, String(parts[0]), &addr.sin_addr) == 1 else { throw MetricsServerError("--metrics-addr: \(parts[0]) is not an IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MetricsServerError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw MetricsServerError("cannot listen on \(address): \(reason)")
        }
        socketFD = fd
        let thread = Thread { [self] in serve() }
        thread.name = "metrics"
        thread.start()
    }

    private func serve() {
        while true {
            let client = accept(socketFD, nil, nil)
            if client < 0 {
                // Out of file descriptors, a connection aborted before it was taken: the next one may do. (The
                // only thread serving /healthz must not end on a passing error.)
                if errno == EBADF || errno == EINVAL { return }  // the socket is gone: nothing to serve
                if errno != EINTR { usleep(100_000) }
                continue
            }
            // One thread serves every scrape: a client that connects and sends nothing (or stops reading) must
            // not hold it — its reads and writes give up after a few seconds.
            var limit = timeval(tv_sec: 3, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(client, &buffer, buffer.count)
        guard n > 0 else { return }
        let request = String(decoding: buffer[0..<n], as: UTF8.self)
        let path = request.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let (status, type, body): (String, String, [UInt8])
        switch path {
        case "/metrics":
            (status, type, body) = ("200 OK", "text/plain; version=0.0.4", registry.emitToBuffer())
        case "/healthz":
            let (ok, text) = health()
            (status, type, body) = (ok ? "200 OK" : "503 Service Unavailable", "text/plain", Array((text + "\n").utf8))
        default:
            (status, type, body) = ("404 Not Found", "text/plain", Array("not found\n".utf8))
        }
        let head = Array("HTTP/1.0 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        _ = (head + body).withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
    }
}

struct MetricsServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
