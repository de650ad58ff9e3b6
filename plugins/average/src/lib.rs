//! `average`: the mean of a numeric field per window and key, with the number of records.
//!
//! Config: `field`. Results: `avg` (float), `count` (int).

use tributary_sdk::*;

pub struct Average {
    field: String,
}

impl Aggregate for Average {
    /// Sum and count; the mean is taken only at the end so merges stay exact.
    type Acc = (f64, u64);

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["field"])?;
        Ok(Average {
            field: config.str("field")?.to_string(),
        })
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .input(Field::float(&self.field))
            .output(Field::float("avg"))
            .output(Field::int("count"))
    }

    fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
        acc.0 += row.float(0);
        acc.1 += 1;
        Ok(())
    }

    // The same folds as `add`, a batch at a time (see `Aggregate::add_rows`).
    fn add_rows(&self, accs: &mut [Self::Acc], slots: &[u32], input: &Batch) -> bool {
        for (&slot, &v) in slots.iter().zip(input.floats(0)) {
            let acc = &mut accs[slot as usize];
            acc.0 += v;
            acc.1 += 1;
        }
        true
    }

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.0 += other.0;
        acc.1 += other.1;
    }

    fn finish(&self, acc: &Self::Acc, _window: &Window, out: &mut RowWriter) {
        out.float(acc.0 / acc.1 as f64).int(acc.1 as i64);
    }

    // The same results as `finish`, a column at a time (see `Aggregate::finish_panes`).
    fn finish_panes(&self, panes: &Panes<'_, Self::Acc>, out: &mut PaneColumns) -> bool {
        out.floats(0)
            .extend(panes.accs().map(|(sum, n)| sum / *n as f64));
        out.ints(1).extend(panes.accs().map(|(_, n)| *n as i64));
        true
    }
}

export_aggregate!(Average);

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_sdk::aggregate::Instance;

    fn average() -> Instance<Average> {
        Instance::new(Average::init(&Config::from_pairs(&[("field", "streams".into())])).unwrap())
    }

    #[test]
    fn averages_each_slot_and_counts() {
        let mut agg = average();
        let batch = Batch {
            rows: 3,
            columns: vec![Column::Float(vec![1.0, 3.0, 10.0])],
        };
        assert!(agg.add(&[0, 0, 1], &batch).is_empty());
        let out = agg.finish(&[0, 1]);
        assert_eq!(
            out.columns,
            vec![Column::Float(vec![2.0, 10.0]), Column::Int(vec![2, 1])]
        );
    }

    #[test]
    fn merge_and_state_round_trip_keep_the_exact_mean() {
        let mut agg = average();
        agg.add(
            &[0, 1],
            &Batch {
                rows: 2,
                columns: vec![Column::Float(vec![1.0, 2.0])],
            },
        );
        agg.merge(0, 1);
        let saved = agg.save(0);
        let mut restored = average();
        restored.load(5, &saved).unwrap();
        assert_eq!(restored.finish(&[5]).columns[0], Column::Float(vec![1.5]));
        assert!(restored.load(6, &saved[..3]).is_err());
    }

    #[test]
    fn rejects_unknown_config() {
        let err = Average::init(&Config::from_pairs(&[
            ("field", "x".into()),
            ("fields", "y".into()),
        ]))
        .err()
        .unwrap();
        assert!(err.contains("unknown config key `fields`"));
    }

    #[test]
    fn batch_hooks_equal_add_and_finish_by_row_and_pane() {
        let config = Config::from_pairs(&[("field", "streams".into())]);
        let values = vec![1.5, -2.0, 1e8, 0.1, 7.25, 3.0, -0.5];
        let batch = Batch {
            rows: values.len(),
            columns: vec![Column::Float(values)],
        };
        tributary_sdk::aggregate::assert_batch_hooks_agree(
            || Average::init(&config).unwrap(),
            &batch,
        );
    }
}
