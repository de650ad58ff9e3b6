//! `fragile`: a sum that fails on purpose, so the tests of a window stage's `on_error` can use a real
//! plugin. Built with the bundled plugins but never bundled; tests load it by path.
//!
//! It sums `streams` and counts rows (results `sum`, `count`). Config: `panic_on_track` (a `track`
//! value: `add` panics on a batch holding it), `panic_on_key` (a window key: `finish` panics for that
//! key's windows); both optional.

use tributary_sdk::*;

pub struct Fragile {
    panic_on_track: String,
    panic_on_key: String,
}

impl Aggregate for Fragile {
    type Acc = (f64, i64);

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["panic_on_track", "panic_on_key"])?;
        Ok(Fragile {
            panic_on_track: config.str_or("panic_on_track", "")?.to_string(),
            panic_on_key: config.str_or("panic_on_key", "")?.to_string(),
        })
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .input(Field::float("streams"))
            .input(Field::str("track"))
            .output(Field::float("sum"))
            .output(Field::int("count"))
    }

    fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
        if !self.panic_on_track.is_empty() && row.str(1) == self.panic_on_track {
            panic!("fragile plugin met track {}", self.panic_on_track);
        }
        acc.0 += row.float(0);
        acc.1 += 1;
        Ok(())
    }

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.0 += other.0;
        acc.1 += other.1;
    }

    fn finish(&self, acc: &Self::Acc, window: &Window, out: &mut RowWriter) {
        if let Some(Value::Str(key)) = &window.key {
            if !self.panic_on_key.is_empty() && *key == self.panic_on_key {
                panic!("fragile plugin cannot finish key {key}");
            }
        }
        out.float(acc.0).int(acc.1);
    }
}

export_aggregate!(Fragile);
