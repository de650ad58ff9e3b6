//! Tumbling windows: fixed-size, non-overlapping `[start, start + size)`, aligned to the epoch.

/// The one window holding `ts`.
pub fn assign(ts: i64, size: i64) -> (i64, i64) {
    let start = ts - ts.rem_euclid(size);
    (start, start + size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_aligned_and_half_open() {
        assert_eq!(assign(0, 60_000), (0, 60_000));
        assert_eq!(assign(59_999, 60_000), (0, 60_000));
        assert_eq!(assign(60_000, 60_000), (60_000, 120_000));
        assert_eq!(
            assign(1_717_243_230_500, 60_000),
            (1_717_243_200_000, 1_717_243_260_000)
        );
        assert_eq!(assign(-1, 60_000), (-60_000, 0));
    }
}
