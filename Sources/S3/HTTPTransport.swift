internal import CCurl
import Foundation
import ShiftCore

/// One HTTP request for libcurl. Bodies come from memory or a file range (streamed, never loaded whole).
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case bytes([UInt8])
        case file(path: String, offset: Int64, length: Int64)
    }

    public enum Sink: Sendable {
        /// Kept in memory (answers, manifests): at most `limit` bytes.
        case memory(limit: Int)
        /// Written to a local file (downloads), so memory stays flat whatever the object's size.
        case file(String)
    }

    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: Body
    public var sink: Sink
    /// Seconds for the whole exchange to make progress: connect within it, and never stall longer.
    public var timeout: Int

    public init(method: String, url: String, headers: [(String, String)] = [], body: Body = .none, sink: Sink = .memory(limit: 16 << 20),
                timeout: Int = 60) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.sink = sink
        self.timeout = timeout
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    /// The body for `.memory` sinks; empty for `.file`.
    public var body: [UInt8]
    public var bytesReceived: Int64
}

/// Transport-level failure (DNS, refused connection, timeout, reset): the request never got an answer.
public struct HTTPTransportError: Error, CustomStringConvertible, Sendable {
    public var url: String
    public var message: String
    public var description: String { "\(message) (\(url))" }
}

/// HTTP through libcurl from Debian, on dedicated threads (blocking calls never run on Swift's cooperative pool).
/// Each thread owns one reusable easy handle, so connections are kept alive between requests; `lanes` requests
/// run at once.
public final class HTTPTransport: Sendable {
    private let lanes: [Lane]
    private let next = Counter()

    public init(lanes: Int = 4) {
        _ = Self.globalInit
        self.lanes = (0..<max(1, lanes)).map { Lane(name: "mongoshift-http-\($0)") }
    }

    deinit { for lane in lanes { lane.thread.shutdown() } }

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public func perform(_ request: HTTPRequest) async throws -> HTTPResponse {
        let lane = lanes[next.increment() % lanes.count]
        return try await lane.thread.run { try lane.handle.perform(request) }
    }

    final class Lane: Sendable {
        let thread: IOThread
        let handle: EasyHandle
        init(name: String) {
            thread = IOThread(name: name)
            handle = EasyHandle()
        }
    }

    final class Counter: @unchecked Sendable {
        // @unchecked: guarded by `lock`.
        private let lock = NSLock()
        private var value = 0
        func increment() -> Int { lock.lock(); defer { lock.unlock() }; value &+= 1; return value }
    }
}

/// One libcurl easy handle, owned here and freed in `deinit`; used only on its lane's thread.
final class EasyHandle: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer

    init() { handle = curl_easy_init() }

    deinit { curl_easy_cleanup(handle) }

    /// Transfer state the C callbacks reach through their context pointer.
    final class Exchange {
        var sink: HTTPRequest.Sink
        var body: [UInt8] = []
        var limit = 0
        var file: FileHandle?
        var received: Int64 = 0
        var headers: [String: String] = [:]
        var upload: [UInt8] = []
        var uploadOffset = 0
        var uploadFile: FileHandle?
        var uploadRemaining: Int64 = 0
        var failure: String?
        init(sink: HTTPRequest.Sink) { self.sink = sink }
    }

    func perform(_ request: HTTPRequest) throws -> HTTPResponse {
        curl_easy_reset(handle)
        let exchange = Exchange(sink: request.sink)
        switch request.sink {
        case .memory(let limit): exchange.limit = limit
        case .file(let path):
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            guard let f = FileHandle(forWritingAtPath: path) else {
                throw HTTPTransportError(url: request.url, message: "cannot write \(path)")
            }
            exchange.file = f
        }
        defer { try? exchange.file?.close(); try? exchange.uploadFile?.close() }
        let context = Unmanaged.passUnretained(exchange).toOpaque()
        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        for (name, value) in request.headers { list = curl_slist_append(list, "\(name): \(value)") }
        // No `Expect: 100-continue` round trip; an empty value removes the header (never signed: SigV4Signer).
        list = curl_slist_append(list, "Expect:")
        let url = request.url
        try url.withCString { u in try check(ms_curl_set_pointer(handle, CURLOPT_URL, u), url) }
        try check(ms_curl_set_pointer(handle, CURLOPT_HTTPHEADER, list), url)
        try check(ms_curl_set_long(handle, CURLOPT_NOSIGNAL, 1), url)
        try check(ms_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT, Int(min(request.timeout, 30))), url)
        // A stalled transfer (under 1 byte/s for `timeout` seconds) is cut; a slow but moving one is not.
        try check(ms_curl_set_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1), url)
        try check(ms_curl_set_long(handle, CURLOPT_LOW_SPEED_TIME, request.timeout), url)
        try check(ms_curl_set_pointer(handle, CURLOPT_WRITEDATA, context), url)
        try check(ms_curl_set_callback(handle, CURLOPT_WRITEFUNCTION, { buffer, size, count, context in
            let exchange = Unmanaged<EasyHandle.Exchange>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            exchange.received += Int64(n)
            let bytes = UnsafeRawBufferPointer(start: buffer, count: n)
            if let file = exchange.file {
                do { try file.write(contentsOf: bytes) } catch { exchange.failure = "\(error)"; return 0 }
            } else {
                if exchange.body.count + n > exchange.limit { exchange.failure = "answer larger than \(exchange.limit) bytes"; return 0 }
                exchange.body.append(contentsOf: bytes)
            }
            return n
        }), url)
        try check(ms_curl_set_pointer(handle, CURLOPT_HEADERDATA, context), url)
        try check(ms_curl_set_callback(handle, CURLOPT_HEADERFUNCTION, { buffer, size, count, context in
            let exchange = Unmanaged<EasyHandle.Exchange>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: n), as: UTF8.self)
            if let colon = line.firstIndex(of: ":") {
                exchange.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return n
        }), url)
        switch request.method {
        case "GET": break
        case "HEAD": try check(ms_curl_set_long(handle, CURLOPT_NOBODY, 1), url)
        default: try request.method.withCString { m in try check(ms_curl_set_pointer(handle, CURLOPT_CUSTOMREQUEST, m), url) }
        }
        switch request.body {
        case .none:
            if request.method == "PUT" || request.method == "POST" { try setUpload(length: 0, exchange: exchange, context: context, url: url) }
        case .bytes(let bytes):
            exchange.upload = bytes
            try setUpload(length: Int64(bytes.count), exchange: exchange, context: context, url: url)
        case .file(let path, let offset, let length):
            guard let f = FileHandle(forReadingAtPath: path) else { throw HTTPTransportError(url: url, message: "cannot read \(path)") }
            try f.seek(toOffset: UInt64(offset))
            exchange.uploadFile = f
            exchange.uploadRemaining = length
            try setUpload(length: length, exchange: exchange, context: context, url: url)
        }
        let result = curl_easy_perform(handle)
        if result != CURLE_OK {
            let reason = exchange.failure ?? String(cString: curl_easy_strerror(result))
            throw HTTPTransportError(url: Self.withoutQuery(url), message: reason)
        }
        var status = 0
        _ = ms_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: exchange.headers, body: exchange.body, bytesReceived: exchange.received)
    }

    /// Uploads go through the read callback with their length declared (S3 refuses chunked uploads).
    private func setUpload(length: Int64, exchange: Exchange, context: UnsafeMutableRawPointer, url: String) throws {
        try check(ms_curl_set_long(handle, CURLOPT_UPLOAD, 1), url)
        try check(ms_curl_set_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)), url)
        try check(ms_curl_set_pointer(handle, CURLOPT_READDATA, context), url)
        try check(ms_curl_set_callback(handle, CURLOPT_READFUNCTION, { buffer, size, count, context in
            let exchange = Unmanaged<EasyHandle.Exchange>.fromOpaque(context!).takeUnretainedValue()
            let room = size * count
            if let file = exchange.uploadFile {
                let want = Int(min(Int64(room), exchange.uploadRemaining))
                guard want > 0 else { return 0 }
                guard let data = try? file.read(upToCount: want), !data.isEmpty else { exchange.failure = "upload file ended early"; return Int(CURL_READFUNC_ABORT) }
                _ = data.copyBytes(to: UnsafeMutableRawBufferPointer(start: buffer, count: data.count).bindMemory(to: UInt8.self))
                exchange.uploadRemaining -= Int64(data.count)
                return data.count
            }
            let n = min(room, exchange.upload.count - exchange.uploadOffset)
            guard n > 0 else { return 0 }
            exchange.upload.withUnsafeBytes { src in
                UnsafeMutableRawPointer(buffer!).copyMemory(from: src.baseAddress! + exchange.uploadOffset, byteCount: n)
            }
            exchange.uploadOffset += n
            return n
        }), url)
    }

    private func check(_ code: CURLcode, _ url: String) throws {
        if code != CURLE_OK { throw HTTPTransportError(url: Self.withoutQuery(url), message: String(cString: curl_easy_strerror(code))) }
    }

    /// Query strings may carry tokens (presigned forms, continuation tokens): never in a message.
    static func withoutQuery(_ url: String) -> String {
        url.firstIndex(of: "?").map { String(url[..<$0]) } ?? url
    }
}
