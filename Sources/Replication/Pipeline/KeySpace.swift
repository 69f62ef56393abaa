/// Cutting an integer key range into partitions without overflow: the arithmetic runs on 128 bits, so keys from
/// `Int64.min` to `Int64.max` (random 64-bit ids, epoch microseconds) split as evenly as small ones.
enum KeySpace {
    /// Up to `parts - 1` increasing cut points strictly between `lo` and `hi`: partition i is (cut[i-1], cut[i]].
    static func cuts(from lo: Int128, to hi: Int128, parts: Int) -> [Int128] {
        guard parts > 1, hi > lo else { return [] }
        let span = hi - lo
        var out: [Int128] = []
        for i in 1..<parts {
            let cut = lo + span * Int128(i) / Int128(parts)
            if cut > (out.last ?? lo - 1), cut < hi { out.append(cut) }
        }
        return out
    }
}
