//! `hostile`: a transform that misbehaves on purpose, so the host's sandbox can be tested against a real
//! plugin. Built with the bundled plugins but never bundled; tests load it by path.
//!
//! Config: `behave`, one of `loop-init` (never returns from `init`), `loop` (never returns from
//! `apply`), `grow` (allocates without end), `explode` (repeats every row 20,000 times), `panic`,
//! `rename` (writes an output named `window_start`), `log` (logs a line per record, with a line break
//! in it, and passes `streams` through), `drop-own` (drops the `streams` it writes), `panic-at-end`
//! (passes `streams` through, then panics in `finish`), or `ok` (passes `streams` through).

use tributary_sdk::*;

pub struct Hostile {
    behave: String,
    output: String,
}

impl Transform for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        let behave = config.str("behave")?.to_string();
        if behave == "loop-init" {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        let output = match behave.as_str() {
            "rename" => "window_start".to_string(),
            "duplicate" => "streams".to_string(),
            _ => "streams".to_string(),
        };
        Ok(Hostile { behave, output })
    }

    fn spec(&self) -> Spec {
        let spec = Spec::new()
            .input(Field::float("streams"))
            .output(Field::float(&self.output));
        match self.behave.as_str() {
            "duplicate" => spec.output(Field::float("streams")),
            "drop-own" => spec.drop("streams"),
            _ => spec,
        }
    }

    fn apply(&mut self, input: &Batch) -> Transformed {
        let values = input.floats(0).to_vec();
        match self.behave.as_str() {
            "loop" => loop {
                std::hint::black_box(&values);
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "log" => {
                for v in &values {
                    log::info(format!("streams is {v}\nsecond line"));
                }
                Transformed::map(vec![Column::Float(values)])
            }
            "explode" => {
                let rows: Vec<u32> = (0..input.rows as u32)
                    .flat_map(|r| std::iter::repeat_n(r, 20_000))
                    .collect();
                let column = rows.iter().map(|&r| values[r as usize]).collect();
                Transformed::select(rows, vec![Column::Float(column)])
            }
            "duplicate" => {
                Transformed::map(vec![Column::Float(values.clone()), Column::Float(values)])
            }
            _ => Transformed::map(vec![Column::Float(values)]),
        }
    }

    fn finish(&mut self, out: &mut RowWriter) {
        if self.behave == "panic-at-end" {
            panic!("hostile plugin panicked at the end on purpose");
        }
        let _ = out;
    }
}

export_transform!(Hostile);
