//! Session windows: a key's records closer than `gap` to each other share a window, which ends `gap`
//! after its last record. A record can bridge two sessions, which then merge.

/// The window a lone record at `ts` opens.
pub fn assign(ts: i64, gap: i64) -> (i64, i64) {
    (ts, ts + gap)
}

/// Whether two session windows touch and so belong together (bounds inclusive, as in Flink).
pub fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_touch_within_the_gap() {
        let gap = 10_000;
        assert!(overlaps(assign(0, gap), assign(10_000, gap)));
        assert!(overlaps(assign(0, gap), assign(5_000, gap)));
        assert!(!overlaps(assign(0, gap), assign(10_001, gap)));
    }
}
