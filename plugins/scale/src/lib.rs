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
            return Err(format!("config key `factor` must be a finite number, found {factor}"));
        }
        Ok(Scale { field: config.str("field")?.to_string(), factor })
    }

    fn spec(&self) -> Spec {
        Spec::new().input(Field::float(&self.field)).output(Field::float(&self.field))
    }

    fn apply(&mut self, input: &Batch) -> Transformed {
        let scaled = input.floats(0).iter().map(|v| v * self.factor).collect();
        Transformed::map(vec![Column::Float(scaled)])
    }
}

export_transform!(Scale);
