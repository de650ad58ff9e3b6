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

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.0 += other.0;
        acc.1 += other.1;
    }

    fn finish(&self, acc: &Self::Acc, out: &mut RowWriter) {
        out.float(acc.0).int(acc.1 as i64);
    }
}

export_aggregate!(Sum);
