import Foundation

/// A dedicated OS thread that runs blocking C calls (libpq, libmongoc, SQLite, file I/O) one at a time,
/// so they never occupy a thread of Swift's cooperative pool.
///
/// `@unchecked Sendable`: the job queue and the `stopped` flag are only touched while holding `condition`.
public final class IOThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [(@Sendable () -> Void)?] = []
    private var head = 0
    private var stopped = false
    private var finished = false

    public init(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Runs `body` on this thread and returns its result to the awaiting task.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let accepted = submit { continuation.resume(with: Result { try body() }) }
            if !accepted { continuation.resume(throwing: IOThreadStopped()) }
        }
    }

    /// Runs `body` on this thread and blocks the calling thread until it returns. Only for callers that are
    /// themselves on a dedicated thread (another IOThread), never on the cooperative pool.
    public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        guard submit({ box.result = Result { try body() }; done.signal() }) else { throw IOThreadStopped() }
        done.wait()
        return try box.result.get()
    }

    /// Runs `body` on a thread of its own, started for it and ended after: for blocking work done once (opening a
    /// store: files, SQLite, a libpq connection made with `runBlocking`) that must not hold a cooperative thread.
    public static func detached<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Queues `job`; false when the thread was shut down.
    @discardableResult
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if stopped { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Lets queued jobs finish, then ends the thread. Idempotent; does not wait.
    public func shutdown() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !stopped { condition.wait() }
            if head == jobs.count && stopped {
                finished = true
                condition.unlock()
                return
            }
            // Take the job out of the queue: a finished job must not keep what it captured (page buffers) alive.
            let job = jobs[head].take()
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job?()
        }
    }
}

public struct IOThreadStopped: Error, CustomStringConvertible {
    public var description: String { "the connection's I/O thread was shut down" }
}

/// A result handed from an IOThread job to a thread blocked waiting for it.
/// `@unchecked Sendable`: written by the job before the waiter's semaphore is signalled, read only after.
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error> = .failure(IOThreadStopped())
}
