//! `scale`: multiplies a numeric field by a constant factor, e.g. `streams` by 1e8.
//!
//! Config: `field` (the field to scale), `factor` (a number). The scaled value replaces the field.

use tributary_sdk::*;

pub struct Scale {
    field: String,
    factor: f64,
}

impl Transform for Scale {
    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["field", "factor"])?;
        let factor = config.f64("factor")?;
        if !factor.is_finite() {
            return Err(format!(
                "config key `factor` must be a finite number, found {factor}"
            ));
        }
        Ok(Scale {
            field: config.str("field")?.to_string(),
            factor,
        })
    }

    fn spec(&self) -> Spec {
        Spec::new()
            .input(Field::float(&self.field))
            .output(Field::float(&self.field))
    }

    fn apply(&mut self, input: &Batch) -> Transformed {
        let scaled = input.floats(0).iter().map(|v| v * self.factor).collect();
        Transformed::map(vec![Column::Float(scaled)])
    }
}

export_transform!(Scale);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_the_field() {
        let mut s = Scale::init(&Config::from_pairs(&[
            ("field", "streams".into()),
            ("factor", 1e8.into()),
        ]))
        .unwrap();
        assert_eq!(s.spec().inputs, vec![Field::float("streams")]);
        let out = s.apply(&Batch {
            rows: 2,
            columns: vec![Column::Float(vec![19.36, 0.5])],
        });
        assert_eq!(
            out,
            Transformed::map(vec![Column::Float(vec![19.36 * 1e8, 0.5e8])])
        );
    }

    #[test]
    fn requires_a_finite_factor() {
        let cfg = Config::from_pairs(&[
            ("field", "streams".into()),
            ("factor", f64::INFINITY.into()),
        ]);
        assert!(Scale::init(&cfg).err().unwrap().contains("finite"));
        assert!(Scale::init(&Config::from_pairs(&[("field", "s".into())]))
            .err()
            .unwrap()
            .contains("`factor`"));
    }
}
