/// The reconciler's ranges over a single integer key, all of one width, so the source can count and sum a whole
/// run of them in one `GROUP BY` — one scan where Redshift, which has no index, scanned the key column once per
/// range. Range i (1…count) is (lo + (i-1)·width, lo + i·width], the first also taking every key ≤ lo, the last
/// ending at hi.
struct ReconcileBuckets: Equatable, Sendable {
    let lo: Int64
    let hi: Int64
    let width: Int64
    let count: Int

    /// nil when hi − lo does not fit 64 bits: the source's BIGINT arithmetic would overflow.
    init?(lo: Int64, hi: Int64, parts: Int) {
        guard hi >= lo else { return nil }
        let (span, overflow) = hi.subtractingReportingOverflow(lo)
        guard !overflow else { return nil }
        let parts = Int64(max(1, parts))
        self.lo = lo
        self.hi = hi
        width = max(1, span / parts + (span % parts == 0 ? 0 : 1))
        count = span == 0 ? 1 : Int(span / width + (span % width == 0 ? 0 : 1))
    }

    /// The inclusive upper end of range `i`.
    func upper(_ i: Int) -> Int64 {
        let end = Int128(lo) + Int128(i) * Int128(width)
        return end >= Int128(hi) ? hi : Int64(end)
    }

    /// (exclusive lower, inclusive upper) of range `i`; the first is unbounded below.
    func bounds(_ i: Int) -> (lower: Int64?, upper: Int64) {
        (i == 1 ? nil : upper(i - 1), upper(i))
    }

    /// The range a key falls in: what `sql` computes on the source.
    func bucket(of key: Int64) -> Int {
        key <= lo ? 1 : Int((key - lo - 1) / width) + 1
    }

    /// The range of key column `k` in SQL, with lo and width bound as parameters `$lo` and `$width` (the key cast
    /// too: PostgreSQL's `oid` has no arithmetic with BIGINT).
    static func sql(_ k: String, lo: Int, width: Int) -> String {
        let key = "CAST(\(k) AS BIGINT)"
        return "CASE WHEN \(key) <= CAST($\(lo) AS BIGINT) THEN 1 ELSE (\(key) - CAST($\(lo) AS BIGINT) - 1) / CAST($\(width) AS BIGINT) + 1 END"
    }
}
