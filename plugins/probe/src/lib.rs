//! `probe`: an aggregate that reports what `finish` was told (since ABI 0.2), so the host's tests can check
//! the window bounds and keys it passes and the nulls it reads back. Built with the bundled plugins but
//! never bundled; tests load it by path.
//!
//! Config: none. Results: `start`, `end` (int, null for the global window), `key` (str: the key as
//! `type:value`, null when there is none) and `n` (int: records folded in), one row per record folded
//! in (none for an empty slot), to exercise several rows per slot.

use tributary_sdk::*;

pub struct Probe;

impl Aggregate for Probe {
    type Acc = u64;

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Probe)
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .output(Field::int("start"))
            .output(Field::int("end"))
            .output(Field::str("key"))
            .output(Field::int("n"))
    }

    fn add(&self, acc: &mut u64, _row: Row<'_>) -> Result<(), String> {
        *acc += 1;
        Ok(())
    }

    fn merge(&self, acc: &mut u64, other: &u64) {
        *acc += other;
    }

    fn finish(&self, acc: &u64, window: &Window, out: &mut RowWriter) {
        for _ in 0..*acc {
            match window.start {
                Some(s) => out.int(s),
                None => out.null(),
            };
            match window.end {
                Some(e) => out.int(e),
                None => out.null(),
            };
            match &window.key {
                Some(Value::Str(s)) => out.str(&format!("str:{s}")),
                Some(Value::Int(i)) => out.str(&format!("int:{i}")),
                Some(Value::Float(f)) => out.str(&format!("float:{f}")),
                Some(Value::Boolean(b)) => out.str(&format!("bool:{b}")),
                None => out.null(),
            };
            out.int(*acc as i64);
        }
    }
}

export_aggregate!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_sdk::aggregate::Instance;

    #[test]
    fn one_row_per_record_with_the_window_and_nulls_for_what_is_missing() {
        let mut agg = Instance::new(Probe::init(&Config::default()).unwrap());
        agg.add(
            &[0, 0, 1],
            &Batch {
                rows: 3,
                columns: vec![],
            },
        );
        let f = agg.finish_windows(&[
            (
                0,
                Window {
                    start: Some(10),
                    end: Some(20),
                    key: Some(Value::Int(7)),
                },
            ),
            (1, Window::default()),
            (2, Window::default()),
        ]);
        assert_eq!(f.rows, [0, 0, 1]);
        assert_eq!(f.valid[0], Some(vec![true, true, false]));
        let Column::Str(keys) = &f.columns[2] else {
            panic!()
        };
        assert_eq!(keys.get(0), "int:7");
        assert_eq!(f.valid[3], None);
    }
}
