import ServiceLifecycle

/// Sleeps between polls: returns early when graceful shutdown begins, and throws `CancellationError` when the
/// task is cancelled (a sibling failed), so no loop outlives the group it belongs to.
func pause(_ duration: Duration) async throws {
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    try Task.checkCancellation()
}
