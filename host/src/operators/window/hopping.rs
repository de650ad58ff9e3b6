//! Hopping windows: `size` long, a new one every `slide`; a record falls into about `size / slide` of them.

/// Every window holding `ts`, latest start first.
pub fn assign(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = (i64, i64)> {
    let last_start = ts - ts.rem_euclid(slide);
    (0..)
        .map(move |k| last_start - k * slide)
        .take_while(move |start| start + size > ts)
        .map(move |start| (start, start + size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lands_in_each_overlapping_window() {
        let w: Vec<_> = assign(65_000, 60_000, 30_000).collect();
        assert_eq!(w, [(60_000, 120_000), (30_000, 90_000)]);
        let w: Vec<_> = assign(60_000, 60_000, 20_000).collect();
        assert_eq!(w, [(60_000, 120_000), (40_000, 100_000), (20_000, 80_000)]);
        // slide == size is a tumbling window.
        assert_eq!(
            assign(59_999, 60_000, 60_000).collect::<Vec<_>>(),
            [(0, 60_000)]
        );
    }
}
