//! `sum`: the total of a numeric field per window and key, with the number of records.
//!
//! Config: `field`. Results: `sum` (float), `count` (int).

use tributary_sdk::*;

pub struct Sum {
    field: String,
}

impl Aggregate for Sum {
    type Acc = (f64, u64);

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["field"])?;
        Ok(Sum {
            field: config.str("field")?.to_string(),
        })
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .input(Field::float(&self.field))
            .output(Field::float("sum"))
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
        out.float(acc.0).int(acc.1 as i64);
    }

    // The same results as `finish`, a column at a time (see `Aggregate::finish_panes`).
    fn finish_panes(&self, panes: &Panes<'_, Self::Acc>, out: &mut PaneColumns) -> bool {
        out.floats(0).extend(panes.accs().map(|(sum, _)| *sum));
        out.ints(1).extend(panes.accs().map(|(_, n)| *n as i64));
        true
    }
}

export_aggregate!(Sum);

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_sdk::aggregate::Instance;

    #[test]
    fn sums_and_counts_per_slot() {
        let mut agg =
            Instance::new(Sum::init(&Config::from_pairs(&[("field", "streams".into())])).unwrap());
        agg.add(
            &[1, 0, 1],
            &Batch {
                rows: 3,
                columns: vec![Column::Float(vec![1.5, 2.0, 3.0])],
            },
        );
        let out = agg.finish(&[0, 1]);
        assert_eq!(
            out.columns,
            vec![Column::Float(vec![2.0, 4.5]), Column::Int(vec![1, 2])]
        );
    }

    #[test]
    fn batch_hooks_equal_add_and_finish_by_row_and_pane() {
        let config = Config::from_pairs(&[("field", "streams".into())]);
        let values = vec![1.5, -2.0, 1e8, 0.1, 7.25, 3.0, -0.5];
        let batch = Batch {
            rows: values.len(),
            columns: vec![Column::Float(values)],
        };
        tributary_sdk::aggregate::assert_batch_hooks_agree(|| Sum::init(&config).unwrap(), &batch);
    }
}
