//! `reshape`: a transform that uses what ABI 0.3 gave transforms, so the host's tests can check each on
//! a real plugin. Built with the bundled plugins but never bundled; tests load it by path.
//!
//! It renames `genre` to `style`, writes `streams` back as null where it is negative, drops the fields
//! named in `drop` (comma-separated, optional), and at the end of input adds one row with `style` =
//! `"(total)"` and the sum of the `streams` it saw.

use tributary_sdk::*;

pub struct Reshape {
    drops: Vec<String>,
    total: f64,
}

impl Transform for Reshape {
    fn init(config: &Config) -> Result<Self, String> {
        let drops = config
            .str_or("drop", "")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Ok(Reshape { drops, total: 0.0 })
    }

    fn spec(&self) -> Spec {
        let spec = Spec::new()
            .input(Field::str("genre"))
            .input(Field::float("streams"))
            .output(Field::str("style"))
            .output(Field::float("streams"))
            .drop("genre");
        self.drops.iter().fold(spec, |spec, d| spec.drop(d))
    }

    fn apply(&mut self, input: &Batch) -> Transformed {
        let mut out = RowWriter::new(&self.spec().outputs);
        for r in 0..input.rows {
            let row = input.row(r);
            out.str(row.str(0));
            let streams = row.float(1);
            if streams < 0.0 {
                out.null();
            } else {
                self.total += streams;
                out.float(streams);
            }
        }
        Transformed::map_rows(out)
    }

    fn finish(&mut self, out: &mut RowWriter) {
        out.str("(total)").float(self.total);
    }
}

export_transform!(Reshape);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_nulls_negatives_and_adds_a_total_at_the_end() {
        let config = Config::new(vec![("drop".into(), ConfigValue::Text("year, ".into()))]);
        let mut t = Reshape::init(&config).unwrap();
        assert_eq!(t.spec().drops, ["genre", "year"]);
        let input = Batch {
            rows: 2,
            columns: vec![
                Column::Str(DictColumn {
                    dict: vec!["rock".into()],
                    codes: vec![0, 0],
                }),
                Column::Float(vec![2.0, -1.0]),
            ],
        };
        let out = t.apply(&input);
        assert_eq!(out.columns[1], Column::Float(vec![2.0, 0.0]));
        assert_eq!(out.valid[1], Some(vec![true, false]));
        let mut end = RowWriter::new(&t.spec().outputs);
        t.finish(&mut end);
        assert_eq!(end.finish()[1], Column::Float(vec![2.0]));
    }
}
