/// An error that knows whether trying again may succeed (a lost connection, a busy lock, a failover) or never
/// will (bad credentials, a syntax error, bad data). Each client library's error type conforms; retry loops ask
/// this protocol and need not know the libraries.
public protocol TransientClassifying: Error {
    var isTransient: Bool { get }
}
