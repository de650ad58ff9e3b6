//! `type = "transform"`: runs a transform plugin over each batch (map, filter, flat-map).

use crate::config::{ByteSize, Duration, PluginConfig};
use crate::plugin::{from_wit, to_wit, Limits, Spec, TransformInstance};
use crate::record::{column, Batch};
use crate::topology::{BuildContext, BuildError, Built, Operator, Output, StageConfig, StageError};
use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

/// Runs a transform plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// A bundled plugin's name (`scale`) or the path to a `.wasm` file, relative to the pipeline file.
    pub plugin: Spanned<String>,
    /// The plugin's own settings, e.g. `config = { field = "streams", factor = 1e8 }`.
    #[serde(default)]
    pub config: PluginConfig,
    /// Longest one plugin call (one batch, or `init`) may run before the run stops with an error that
    /// names the plugin, like `"5s"` (the default): a plugin that loops cannot hang the pipeline.
    pub timeout: Option<Duration>,
    /// Most memory the plugin's instance may use, like `"512MiB"` (the default).
    pub memory_limit: Option<ByteSize>,
    /// Most output rows a call may return per input row (a flat-map's fan-out), 1 to 1000000. Default
    /// 100: a plugin that multiplies rows without bound would otherwise fill the host's memory.
    pub max_rows_per_record: Option<Spanned<u32>>,
}

impl StageConfig for TransformConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let limits = Limits::from_config(self.timeout, self.memory_limit)
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        let max_fanout = match &self.max_rows_per_record {
            None => 100,
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(BuildError::new(
                    Some(n.span()),
                    "`max_rows_per_record` must be between 1 and 1000000",
                ))
            }
        };
        let instance = ctx.plugin(&self.plugin, &self.config, |host, plugin, config| {
            host.transform(plugin, config, limits)
        })?;
        crate::plugin::check_outputs(&instance.spec.outputs, &[])
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        Ok(Built::Operator(Box::new(Transform {
            spec: instance.spec.clone(),
            instance,
            max_fanout,
        })))
    }
}

pub struct Transform {
    instance: TransformInstance,
    spec: Spec,
    max_fanout: u32,
}

impl Operator for Transform {
    fn process(&mut self, batch: Arc<Batch>, out: &mut Output) -> Result<(), StageError> {
        let spec = &self.spec;
        let converted = to_wit(&batch, &spec.inputs, None);
        for (row, reason) in &converted.rejected {
            out.dead_row(&batch, *row, reason);
        }
        if converted.kept.is_empty() {
            return Ok(());
        }
        let result = self
            .instance
            .apply(&converted.batch)
            .map_err(|e| StageError::with("plugin call failed", e))?;
        let kept = &converted.kept;
        let what = self.instance.what().to_string();
        let bad = |m: String| {
            StageError::msg(format!("plugin `{what}` broke the transform contract: {m}"))
        };

        let mut failed = vec![false; kept.len()];
        for e in &result.errors {
            let Some(&row) = kept.get(e.row as usize) else {
                return Err(bad(format!(
                    "error for row {} of a {}-row batch",
                    e.row,
                    kept.len()
                )));
            };
            failed[e.row as usize] = true;
            out.dead_row(&batch, row as usize, &e.reason);
        }
        // Output rows in terms of the original batch's rows.
        let rows: Vec<u32> = match &result.rows {
            None => kept
                .iter()
                .zip(&failed)
                .filter(|(_, f)| !**f)
                .map(|(r, _)| *r)
                .collect(),
            Some(rows) if rows.len() as u64 > u64::from(self.max_fanout) * kept.len() as u64 => {
                return Err(bad(format!(
                    "{} output rows for {} input rows, more than `max_rows_per_record` ({}) allows",
                    rows.len(),
                    kept.len(),
                    self.max_fanout
                )));
            }
            Some(rows) => rows
                .iter()
                .map(|&r| {
                    kept.get(r as usize).copied().ok_or_else(|| {
                        bad(format!("output row from input row {r} of {}", kept.len()))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut output = if result.rows.is_none() && rows.len() == batch.len {
            Arc::unwrap_or_clone(batch)
        } else {
            batch.gather(&rows)
        };
        if result.columns.len() != spec.outputs.len() {
            return Err(bad(format!(
                "{} output columns for {} declared outputs",
                result.columns.len(),
                spec.outputs.len()
            )));
        }
        let keep_idx: Option<Vec<u32>> = match &result.rows {
            // A map returns a value for every input row passed, failed ones included: drop those.
            None if failed.iter().any(|f| *f) => Some(
                (0..kept.len() as u32)
                    .filter(|&i| !failed[i as usize])
                    .collect(),
            ),
            _ => None,
        };
        let n_values = if result.rows.is_none() {
            kept.len()
        } else {
            rows.len()
        };
        for (column, field) in result.columns.into_iter().zip(&spec.outputs) {
            let mut array = from_wit(column, n_values, field).map_err(bad)?;
            if let Some(idx) = &keep_idx {
                array = column::take(&array, idx);
            }
            output.set_column(field.name.clone(), array);
        }
        out.emit(output);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<(), StageError> {
        Ok(())
    }
}
