//! `type = "file"`: writes records as JSON Lines.

use crate::outfile::{self, OutputMode};
use crate::record::Batch;
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use toml::Spanned;

/// Writes each record as one JSON object a line; window bounds are written as RFC 3339 text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The output file, relative to the pipeline file; its directory is created.
    pub path: Spanned<PathBuf>,
    /// `"truncate"`: start the file afresh; `"append"`: write after what earlier runs wrote (a torn
    /// last line left by a crash is removed first). Default: append when a source resumes from
    /// committed offsets (`start = "committed"`), truncate otherwise.
    pub mode: Option<OutputMode>,
}

impl StageConfig for FileConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        if self.path.get_ref().as_os_str().is_empty() {
            return Err(BuildError::new(
                Some(self.path.span()),
                "`path` is empty; name the output file",
            ));
        }
        Ok(Built::Sink(Box::new(FileSink {
            path: ctx.path(self.path.get_ref()),
            mode: self
                .mode
                .unwrap_or(OutputMode::default_for(ctx.pipeline.resumes())),
            out: None,
        })))
    }
}

pub struct FileSink {
    path: PathBuf,
    mode: OutputMode,
    out: Option<BufWriter<File>>,
}

impl FileSink {
    fn io(&self, e: std::io::Error) -> StageError {
        StageError::with(format!("cannot write `{}`", self.path.display()), e)
    }
}

impl Sink for FileSink {
    fn open(&mut self) -> Result<(), StageError> {
        let (file, torn) = outfile::open(&self.path, self.mode).map_err(|e| self.io(e))?;
        if torn > 0 {
            eprintln!(
                "warning: removed a torn last line ({torn} bytes, left by a crash) from `{}`",
                self.path.display()
            );
        }
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        let out = self.out.as_mut().expect("opened");
        let mut line = Vec::with_capacity(256);
        let mut result = Ok(());
        for row in 0..batch.len {
            line.clear();
            let object: serde_json::Map<String, serde_json::Value> = batch
                .columns
                .iter()
                .map(|c| (c.name.to_string(), c.values[row].to_json()))
                .collect();
            serde_json::to_writer(&mut line, &object).expect("JSON values serialise");
            line.push(b'\n');
            if let Err(e) = out.write_all(&line) {
                result = Err(e);
                break;
            }
        }
        // Flushed per batch: once `write` returns, the rows are in the file, so the batch's progress
        // tokens may let the source commit (a live run's rows also show up as windows close).
        result.and_then(|()| out.flush()).map_err(|e| self.io(e))
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        let r = self.out.as_mut().map_or(Ok(()), |o| o.flush());
        r.map_err(|e| self.io(e))
    }
}
