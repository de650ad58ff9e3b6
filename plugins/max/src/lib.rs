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

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        if let Some(o) = *other {
            *acc = Some(acc.map_or(o, |m| m.max(o)));
        }
    }

    fn finish(&self, acc: &Self::Acc, out: &mut RowWriter) {
        out.float(acc.unwrap_or(f64::NAN));
    }
}

export_aggregate!(Max);
