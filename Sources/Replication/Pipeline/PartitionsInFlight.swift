/// The snapshot partitions this process's copiers are copying. A claim in the state store names the worker, not
/// the copier: without this set a copier could claim a partition whose claim expired while another copier of the
/// same worker was still copying it (docs/ARCHITECTURE.md, "Snapshot").
actor PartitionsInFlight {
    private(set) var indices: Set<Int> = []

    func insert(_ index: Int) { indices.insert(index) }
    func remove(_ index: Int) { indices.remove(index) }
}
