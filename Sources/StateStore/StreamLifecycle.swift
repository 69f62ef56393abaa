/// A stream's phase and the only ways it may change (docs/ARCHITECTURE.md, "Stream lifecycle").
///
///     new ──begin──▶ snapshotting ──complete──▶ streaming
///      ▲                 │  ▲ begin (re-plan)       │
///      └──── reset ──────┴──┴───────────────────────┘          (reset: history lost, operator)
///     any ──fail──▶ failed(from: phase) ──resume──▶ phase
///     any ──reposition──▶ streaming                            (operator: `reset --to now|time|token|watermark`)
///
/// A value type, unit-tested without a database; the state store applies it inside the transaction that persists
/// the phase, so an illegal transition fails loudly instead of leaving a stream in a state nothing expects.
public struct StreamLifecycle: Sendable, Equatable {
    public enum Phase: String, Sendable, Equatable {
        case new
        case snapshotting
        case streaming
        case failed
    }

    public enum State: Sendable, Equatable {
        case new
        case snapshotting
        case streaming
        /// Stopped on a permanent error; `from` is where it stood, and where `resume` takes it back to.
        case failed(from: Phase)

        public var phase: Phase {
            switch self {
            case .new: .new
            case .snapshotting: .snapshotting
            case .streaming: .streaming
            case .failed: .failed
            }
        }

        /// True once the snapshot was applied whole (the tail may run).
        public var snapshotComplete: Bool {
            switch self {
            case .streaming, .failed(from: .streaming): true
            default: false
            }
        }
    }

    public enum Event: Sendable, Equatable {
        /// Plan (or re-plan) the snapshot: positions captured, partitions cut.
        case beginSnapshot
        /// Every partition copied and every page applied: the tail takes over.
        case completeSnapshot
        /// A permanent error stopped the stream.
        case fail
        /// A new run picks a failed stream up again where it stood.
        case resume
        /// Forget positions and partitions: the next run snapshots again.
        case reset
        /// An operator set the stream's position: it tails from there, with no snapshot.
        case reposition
    }

    public struct IllegalTransition: Error, CustomStringConvertible, Sendable, Equatable {
        public var state: State
        public var event: Event
        public var description: String { "a stream in phase \(state) cannot \(event)" }
    }

    public private(set) var state: State

    public init(_ state: State = .new) {
        self.state = state
    }

    /// Applies `event`, or throws without changing anything when the lifecycle does not allow it.
    public mutating func apply(_ event: Event) throws(IllegalTransition) {
        switch (state, event) {
        case (.new, .beginSnapshot), (.snapshotting, .beginSnapshot):
            state = .snapshotting
        case (.snapshotting, .completeSnapshot):
            state = .streaming
        case (.failed, .fail):
            break
        case (_, .fail):
            state = .failed(from: state.phase)
        case (.failed(let from), .resume):
            state = Self.state(of: from)
        case (.new, .resume), (.snapshotting, .resume), (.streaming, .resume):
            break
        case (_, .reset):
            state = .new
        case (_, .reposition):
            state = .streaming
        default:
            throw IllegalTransition(state: state, event: event)
        }
    }

    static func state(of phase: Phase) -> State {
        switch phase {
        case .new, .failed: .new
        case .snapshotting: .snapshotting
        case .streaming: .streaming
        }
    }

    /// The stored form: the phase, and for a failed stream the phase it failed in.
    init(stored phase: String, failedFrom: String?) {
        switch Phase(rawValue: phase) ?? .new {
        case .new: state = .new
        case .snapshotting: state = .snapshotting
        case .streaming: state = .streaming
        case .failed: state = .failed(from: failedFrom.flatMap(Phase.init(rawValue:)) ?? .new)
        }
    }

    var storedFailedFrom: String? {
        if case .failed(let from) = state { return from.rawValue }
        return nil
    }
}
