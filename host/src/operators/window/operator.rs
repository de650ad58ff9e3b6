//! The window stage in the pipeline: batches in, results and dead letters out, the plugin's failures
//! survived (with `on_error = "dead-letter"`), state saved at checkpoints and handed over at swaps.

use super::*;

pub struct WindowOperator {
    pub(super) windows: Windows<AggregateInstance>,
    /// Whether the first batch came: the restored watermark is read then, when a source has restored it.
    pub(super) started: bool,
    /// What rebuilds the state after the plugin fails, with `on_error = "dead-letter"`; `None` with
    /// `"fail"`.
    pub(super) recovery: Option<Recovery>,
    /// Plugin failures survived, for the warnings.
    pub(super) failures: u64,
}

/// Most windows whose result failed at the end of input that are tried one by one (each failure
/// rebuilds the state); the rest go to the dead-letter output untried.
const MAX_FAILED_AT_END: u32 = 20;

/// A plugin failure a window stage does not survive: a stop signal, or `on_error = "fail"`.
fn fatal(e: &PluginError, recovery: &Option<Recovery>) -> bool {
    matches!(e, PluginError::Interrupted { .. }) || recovery.is_none()
}

impl WindowOperator {
    fn handle(
        &mut self,
        out: &mut Output,
        batch: &Batch,
        step: (Option<Batch>, Rejected),
        resume_point: Option<i64>,
    ) {
        let (emitted, rejected) = step;
        for (row, reason, late) in rejected {
            if late {
                out.late_row(batch, row, &reason);
            } else {
                out.dead_row(batch, row, &reason);
            }
        }
        let replayed = self.windows.take_replayed();
        if replayed > 0 {
            out.replayed(replayed);
        }
        if let Some(mut b) = emitted {
            if let Some(wm) = resume_point {
                // First, so it reports before the source acks let the batches commit (see `Progress`).
                let token = out.progress().written(out.stage(), wm);
                b.acks.insert(0, token);
            }
            out.emit(b);
        }
    }
}

impl WindowOperator {
    /// A failure survived: counted, and said once (the count comes at the end).
    fn warn(&mut self, out: &Output, cause: &str, what: &str) {
        self.failures += 1;
        if self.failures == 1 {
            eprintln!(
                "warning: stage `{}`: {cause}; {what}, and the plugin restarted with its open windows rebuilt (`on_error = \"fail\"` stops the run instead)",
                out.stage()
            );
        }
    }

    /// Restarts the plugin and rebuilds the open windows (see `recovery`).
    fn rebuild(&mut self) -> Result<(), StageError> {
        let recovery = self
            .recovery
            .as_ref()
            .expect("only with on_error = dead-letter");
        recovery.rebuild(&mut self.windows).map_err(|e| {
            StageError::with(
                "the plugin failed again while the stage rebuilt its open windows after a failure",
                e,
            )
        })
    }

    /// End of input after `finish` failed for every window at once: the windows one by one, each that
    /// fails named in the dead-letter output, the state rebuilt after each failure.
    fn finish_one_by_one(
        &mut self,
        out: &mut Output,
        point: Option<i64>,
    ) -> Result<(), StageError> {
        let mut handled = 0usize;
        let mut failed = 0u32;
        loop {
            self.rebuild()?;
            for _ in 0..handled {
                let due = self.windows.next_due_at_end().expect("the same panes");
                self.windows.skip_pane(due);
            }
            loop {
                let Some(due) = self.windows.next_due_at_end() else {
                    // Nothing due: this only lets the expired panes go.
                    let rest = self
                        .windows
                        .finish()
                        .map_err(|e| StageError::with("plugin call failed", e))?;
                    self.handle(out, &Batch::default(), (rest, Vec::new()), point);
                    return Ok(());
                };
                handled += 1;
                let cause = if failed >= MAX_FAILED_AT_END {
                    self.windows.skip_pane(due);
                    format!("not tried: the plugin failed for {MAX_FAILED_AT_END} windows before")
                } else {
                    match self.windows.finish_pane(due) {
                        Ok(batch) => {
                            self.handle(out, &Batch::default(), (Some(batch), Vec::new()), point);
                            continue;
                        }
                        Err(e) if fatal(&e, &self.recovery) => {
                            return Err(StageError::with("plugin call failed", e))
                        }
                        Err(e) => e.to_string(),
                    }
                };
                let reason = format!(
                    "plugin failed at the end of input, so this window's result is lost: {cause}"
                );
                out.dead_result(self.windows.describe(due), &reason);
                if failed < MAX_FAILED_AT_END {
                    failed += 1;
                    self.warn(
                        out,
                        &cause,
                        "the window's result went to the dead-letter output",
                    );
                    break; // the instance is unusable: rebuild, then go on after this window
                }
            }
        }
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, batch: Arc<Batch>, out: &mut Output) -> Result<(), StageError> {
        if !self.started {
            self.started = true;
            // A source restores before its first batch, so this is the time to look.
            if let Some(wm) = out.progress().restored(out.stage()) {
                self.windows.resume(wm);
            }
        }
        if let Some(r) = &mut self.recovery {
            r.before(&mut self.windows)
                .map_err(|e| StageError::with("cannot save the open windows", e))?;
        }
        match self.windows.process(&batch) {
            Ok(step) => {
                let point = self.windows.resume_point();
                self.handle(out, &batch, step, point);
                if let Some(r) = &mut self.recovery {
                    r.after(batch);
                }
                Ok(())
            }
            Err(e) if fatal(&e, &self.recovery) => Err(StageError::with("plugin call failed", e)),
            Err(e) => {
                // Whatever the failed call did to the state is undone by the rebuild; the batch's
                // records, none of which counted, go to the dead-letter output.
                self.rebuild()?;
                let cause = e.to_string();
                let reason = format!("plugin failed: {cause}");
                for row in 0..batch.len {
                    out.dead_row(&batch, row, &reason);
                }
                self.warn(
                    out,
                    &cause,
                    &format!("the batch's {} records were dead-lettered", batch.len),
                );
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        // The watermark before the end of input: the end flushes windows the watermark has not reached,
        // and records for those may still come in a later run.
        let point = self.windows.resume_point();
        match self.windows.finish() {
            Ok(emitted) => self.handle(out, &Batch::default(), (emitted, Vec::new()), point),
            Err(e) if fatal(&e, &self.recovery) => {
                return Err(StageError::with("plugin call failed", e))
            }
            Err(_) => self.finish_one_by_one(out, point)?,
        }
        if self.failures > 1 {
            eprintln!(
                "warning: stage `{}`: the plugin failed {} times in all; the dead-letter output has what it failed on",
                out.stage(),
                self.failures
            );
        }
        Ok(())
    }

    fn checkpoint(&mut self, _: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        self.windows
            .save()
            .map(Some)
            .map_err(|e| StageError::with("cannot save the window state", e))
    }

    fn watermark(&self) -> Option<i64> {
        Some(self.windows.watermark()).filter(|&w| w != i64::MIN)
    }

    fn handover(&mut self, _: &mut Output) -> Result<crate::topology::Handover, StageError> {
        self.hand_over()
    }

    fn take_over(
        &mut self,
        handover: &mut crate::topology::Handover,
        reset: bool,
    ) -> Result<(), StageError> {
        self.take_over_from(handover, reset)
    }

    fn fields(&self) -> crate::topology::Fields {
        let settings = &self.windows.settings;
        let acc = &self.windows.acc;
        let key = settings.key.iter().map(|k| format!("{k} (key)"));
        let time = settings
            .event_time
            .iter()
            .map(|t| format!("{t} (event time)"));
        let bounds = ["window_start", "window_end"].map(String::from);
        crate::topology::Fields {
            plugin: Some(acc.what().to_string()),
            reads: key
                .clone()
                .chain(time)
                .chain(acc.inputs().iter().map(crate::topology::describe_field))
                .collect(),
            writes: bounds
                .into_iter()
                .chain(key)
                .chain(acc.outputs().iter().map(crate::topology::describe_field))
                .collect(),
            drops: Vec::new(),
            reads_nothing: false,
        }
    }

    fn reset(&mut self) -> Result<(), StageError> {
        if let Some(r) = &mut self.recovery {
            r.reset();
        }
        self.windows
            .clear()
            .map_err(|e| StageError::with("cannot restart the plugin", e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        // Restored state replaces the committed-watermark logic: nothing read again is a replay.
        self.started = true;
        if let Some(r) = &mut self.recovery {
            r.reset();
        }
        self.windows
            .load(&state)
            .map_err(|e| StageError::with("cannot restore the window state", e))
    }
}
