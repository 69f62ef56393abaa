import BSON
import Changes
import Foundation

/// How positions and keys are stored: the position codec's BSON bytes in a blob column (NULL: none).
enum StateCodec {
    static var now: Double { Date().timeIntervalSince1970 }

    static func blob(_ position: StreamPosition?) -> StateValue {
        position.map { .blob($0.document.bytes) } ?? .null
    }

    static func blob(_ key: SnapshotKey?) -> StateValue {
        blob(key.map(StreamPosition.snapshotKey))
    }

    static func position(_ value: StateValue) throws(StateStoreError) -> StreamPosition? {
        guard let bytes = value.blob, !bytes.isEmpty else { return nil }
        do {
            return try StreamPosition.decode(try Document(bytes: bytes))
        } catch {
            throw StateStoreError(.unreadable, "stored position: \(error)")
        }
    }

    static func key(_ value: StateValue) throws(StateStoreError) -> SnapshotKey? {
        guard let position = try position(value) else { return nil }
        guard case .snapshotKey(let key) = position else { throw StateStoreError(.unreadable, "stored partition key is not a key: \(position)") }
        return key
    }
}
