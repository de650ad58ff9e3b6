//! `type = "transform"`: runs a transform plugin over each batch (map, filter, flat-map), which may also
//! rename or remove fields (ABI 0.3 `drops`) and add rows at the end of input (`finish`).

use crate::config::{ByteSize, Duration, OnError, PluginConfig};
use crate::plugin::{from_wit_nullable, to_wit, wit, Limits, PluginError, Spec, TransformInstance};

/// Most rows a transform's `finish` may add: the flush is one call, so its answer must stay bounded.
const MAX_FLUSHED_ROWS: u64 = 10_000_000;
use crate::record::{column, Batch, Column};
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
    /// When the plugin fails on a batch (traps, panics, passes its `timeout` or `memory_limit`, or
    /// breaks the contract): `"dead-letter"` (the default) sends the batch's records to the dead-letter
    /// output with the cause, restarts the plugin and goes on; `"fail"` stops the run with the error.
    pub on_error: Option<OnError>,
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
        let mut instance = ctx.plugin(&self.plugin, &self.config, |host, plugin, config| {
            host.transform(plugin, config, limits)
        })?;
        instance.set_log_label(format!("stage `{}`", ctx.stage));
        crate::plugin::check_outputs(&instance.spec.outputs, &[])
            .and_then(|_| check_drops(&instance.spec))
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        Ok(Built::Operator(Box::new(Transform {
            spec: instance.spec.clone(),
            instance,
            max_fanout,
            on_error: self.on_error.unwrap_or_default(),
            failures: 0,
            newest: i64::MIN,
        })))
    }
}

/// The fields a transform removes must be named, once each, and not be outputs as well: an output
/// that is also dropped would be written and removed in one call, which is surely a mistake.
fn check_drops(spec: &Spec) -> Result<(), String> {
    for (i, name) in spec.drops.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(format!(
                "the plugin declares a dropped field with an empty name (drop {}); every dropped field needs a name",
                i + 1
            ));
        }
        if spec.drops[..i].contains(name) {
            return Err(format!(
                "the plugin declares the dropped field `{name}` twice; name it once"
            ));
        }
        if spec.outputs.iter().any(|f| *f.name == **name) {
            return Err(format!(
                "the plugin both writes and drops `{name}`; a field it writes is kept, so it must not drop it"
            ));
        }
    }
    Ok(())
}

pub struct Transform {
    instance: TransformInstance,
    spec: Spec,
    max_fanout: u32,
    on_error: OnError,
    /// Batches the plugin failed on, restarted after.
    failures: u64,
    /// The newest event time seen: the time of the rows `finish` adds, which have no record of their own.
    newest: i64,
}

/// Why a batch produced no output.
enum Failure {
    /// The plugin call failed (trap, panic, deadline, memory).
    Call(PluginError),
    /// The plugin answered something the transform contract does not allow.
    Contract(String),
}

/// A batch transformed: its output and the rows the plugin refused, with their reasons.
struct Done {
    output: Batch,
    refused: Vec<(usize, String)>,
}

impl Transform {
    /// Runs the plugin on the rows that fit its inputs and checks its answer whole before anything is
    /// written, so that a failure leaves no partial output or dead letters behind.
    fn transform(
        &mut self,
        batch: &Arc<Batch>,
        kept: &[u32],
        input: &wit::Batch,
    ) -> Result<Done, Failure> {
        let spec = &self.spec;
        let result = self.instance.apply(input).map_err(Failure::Call)?;
        let bad = Failure::Contract;

        let mut failed = vec![false; kept.len()];
        let mut refused = Vec::with_capacity(result.errors.len());
        for e in result.errors {
            let Some(&row) = kept.get(e.row as usize) else {
                return Err(bad(format!(
                    "error for row {} of a {}-row batch",
                    e.row,
                    kept.len()
                )));
            };
            failed[e.row as usize] = true;
            refused.push((row as usize, e.reason));
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
        if result.columns.len() != spec.outputs.len() {
            return Err(bad(format!(
                "{} output columns for {} declared outputs",
                result.columns.len(),
                spec.outputs.len()
            )));
        }
        let mut output = if result.rows.is_none() && rows.len() == batch.len {
            Batch::clone(batch)
        } else {
            batch.gather(&rows)
        };
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
            let mut array = from_wit_nullable(column, n_values, field).map_err(bad)?;
            if let Some(idx) = &keep_idx {
                array = column::take(&array, idx);
            }
            output.set_column(field.name.clone(), array);
        }
        if !spec.drops.is_empty() {
            output
                .columns
                .retain(|c| !spec.drops.iter().any(|d| **d == *c.name));
        }
        Ok(Done { output, refused })
    }

    /// The rows the plugin adds at the end of input, made of its outputs only.
    fn flush(&mut self) -> Result<Option<Batch>, Failure> {
        let flushed = self.instance.finish().map_err(Failure::Call)?;
        let n = flushed.rows as usize;
        if n == 0 {
            return Ok(None);
        }
        let outputs = &self.spec.outputs;
        if flushed.columns.len() != outputs.len() {
            return Err(Failure::Contract(format!(
                "`finish` returned {} columns for {} declared outputs",
                flushed.columns.len(),
                outputs.len()
            )));
        }
        if n as u64 > MAX_FLUSHED_ROWS {
            return Err(Failure::Contract(format!(
                "`finish` returned {n} rows, more than the {MAX_FLUSHED_ROWS} a transform may add at the end of input"
            )));
        }
        let columns = flushed
            .columns
            .into_iter()
            .zip(outputs)
            .map(|(c, field)| {
                from_wit_nullable(c, n, field).map(|a| Column::new(field.name.clone(), a))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::Contract)?;
        Ok(Some(Batch {
            len: n,
            time: vec![
                if self.newest == i64::MIN {
                    0
                } else {
                    self.newest
                };
                n
            ],
            origin: vec![Default::default(); n],
            columns,
            acks: Vec::new(),
        }))
    }
}

impl Operator for Transform {
    fn fields(&self) -> crate::topology::Fields {
        let describe = |v: &[crate::plugin::FieldSpec]| {
            v.iter().map(crate::topology::describe_field).collect()
        };
        crate::topology::Fields {
            plugin: Some(self.instance.what().to_string()),
            reads: describe(&self.spec.inputs),
            writes: describe(&self.spec.outputs),
            drops: self.spec.drops.clone(),
            reads_nothing: false,
        }
    }

    fn process(&mut self, batch: Arc<Batch>, out: &mut Output) -> Result<(), StageError> {
        if let Some(&t) = batch.time.iter().max() {
            self.newest = self.newest.max(t);
        }
        let converted = to_wit(&batch, &self.spec.inputs, None);
        for (row, reason) in &converted.rejected {
            out.dead_row(&batch, *row, reason);
        }
        if converted.kept.is_empty() {
            return Ok(());
        }
        let what = self.instance.what().to_string();
        let cause = match self.transform(&batch, &converted.kept, &converted.batch) {
            Ok(done) => {
                for (row, reason) in &done.refused {
                    out.dead_row(&batch, *row, reason);
                }
                out.emit(done.output);
                return Ok(());
            }
            Err(Failure::Call(e @ PluginError::Interrupted { .. })) => {
                return Err(StageError::with("plugin call failed", e))
            }
            Err(Failure::Call(e)) if self.on_error == OnError::Fail => {
                return Err(StageError::with("plugin call failed", e))
            }
            Err(Failure::Contract(m)) if self.on_error == OnError::Fail => {
                return Err(StageError::msg(format!(
                    "plugin `{what}` broke the transform contract: {m}"
                )))
            }
            Err(Failure::Call(e)) => e.to_string(),
            Err(Failure::Contract(m)) => {
                format!("plugin `{what}` broke the transform contract: {m}")
            }
        };
        // `on_error = "dead-letter"`: the batch's records, with the cause, and a fresh instance.
        let reason = format!("plugin failed: {cause}");
        for &row in &converted.kept {
            out.dead_row(&batch, row as usize, &reason);
        }
        self.failures += 1;
        if self.failures == 1 {
            eprintln!(
                "warning: stage `{}`: {cause}; the batch's {} records were dead-lettered and the plugin restarted (`on_error = \"fail\"` stops the run instead)",
                out.stage(),
                converted.kept.len()
            );
        }
        self.instance
            .restart()
            .map_err(|e| StageError::with("cannot restart the plugin after it failed", e))
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        let what = self.instance.what().to_string();
        match self.flush() {
            Ok(Some(batch)) => {
                out.emit(batch);
            }
            Ok(None) => {}
            Err(Failure::Call(e)) if self.on_error == OnError::Fail => {
                return Err(StageError::with(
                    "plugin call failed at the end of input",
                    e,
                ))
            }
            Err(Failure::Contract(m)) if self.on_error == OnError::Fail => {
                return Err(StageError::msg(format!(
                    "plugin `{what}` broke the transform contract in `finish`: {m}"
                )))
            }
            // There is no record to dead-letter: the rows the plugin held back are what is lost, so
            // the dead-letter output says so in a line of its own, and so does the run.
            Err(failure) => {
                let cause = match failure {
                    Failure::Call(e) => e.to_string(),
                    Failure::Contract(m) => {
                        format!("plugin `{what}` broke the transform contract in `finish`: {m}")
                    }
                };
                let reason = format!(
                    "plugin failed at the end of input, so the rows it held back are lost: {cause}"
                );
                eprintln!("warning: stage `{}`: {reason}", out.stage());
                out.dead_result(serde_json::json!({ "call": "finish" }), &reason);
            }
        }
        if self.failures > 1 {
            eprintln!(
                "warning: stage `{}`: the plugin failed on {} batches in all; their records are in the dead-letter output",
                out.stage(),
                self.failures
            );
        }
        Ok(())
    }
}
