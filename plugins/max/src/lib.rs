//! `max`: the largest value of a numeric field per window and key.
//!
//! Config: `field`. Result: `max` (float).

use tributary_sdk::*;

pub struct Max {
    field: String,
}

impl Aggregate for Max {
    /// `None` until the first row, so an empty window never reports a made-up maximum.
    type Acc = Option<f64>;

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["field"])?;
        Ok(Max {
            field: config.str("field")?.to_string(),
        })
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .input(Field::float(&self.field))
            .output(Field::float("max"))
    }

    fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
        let v = row.float(0);
        *acc = Some(acc.map_or(v, |m| m.max(v)));
        Ok(())
    }

    // The same folds as `add`, a batch at a time (see `Aggregate::add_rows`).
    fn add_rows(&self, accs: &mut [Self::Acc], slots: &[u32], input: &Batch) -> bool {
        for (&slot, &v) in slots.iter().zip(input.floats(0)) {
            let acc = &mut accs[slot as usize];
            *acc = Some(acc.map_or(v, |m| m.max(v)));
        }
        true
    }

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        if let Some(o) = *other {
            *acc = Some(acc.map_or(o, |m| m.max(o)));
        }
    }

    fn finish(&self, acc: &Self::Acc, _window: &Window, out: &mut RowWriter) {
        out.float(acc.unwrap_or(f64::NAN));
    }

    // The same results as `finish`, a column at a time (see `Aggregate::finish_panes`).
    fn finish_panes(&self, panes: &Panes<'_, Self::Acc>, out: &mut PaneColumns) -> bool {
        out.floats(0)
            .extend(panes.accs().map(|m| m.unwrap_or(f64::NAN)));
        true
    }
}

export_aggregate!(Max);

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_sdk::aggregate::Instance;

    #[test]
    fn keeps_the_largest_value_per_slot_and_merges() {
        let mut agg =
            Instance::new(Max::init(&Config::from_pairs(&[("field", "streams".into())])).unwrap());
        agg.add(
            &[0, 0, 1, 2],
            &Batch {
                rows: 4,
                columns: vec![Column::Float(vec![1.0, 7.5, -3.0, 2.0])],
            },
        );
        agg.merge(1, 2);
        let out = agg.finish(&[0, 1, 3]);
        let Column::Float(v) = &out.columns[0] else {
            panic!("float output")
        };
        assert_eq!(&v[..2], &[7.5, 2.0]);
        assert!(v[2].is_nan(), "an empty slot has no maximum");
    }

    #[test]
    fn batch_hooks_equal_add_and_finish_by_row_and_pane() {
        let config = Config::from_pairs(&[("field", "streams".into())]);
        let values = vec![1.5, -2.0, 1e8, 0.1, 7.25, 3.0, -0.5];
        let batch = Batch {
            rows: values.len(),
            columns: vec![Column::Float(values)],
        };
        tributary_sdk::aggregate::assert_batch_hooks_agree(|| Max::init(&config).unwrap(), &batch);
    }
}
