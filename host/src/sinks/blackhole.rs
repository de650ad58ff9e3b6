//! `type = "blackhole"`: takes records and drops them.
//!
//! What it is for: measuring what comes before it (how fast a source reads and decodes, or a transform
//! runs, with no output cost), and trying a pipeline's upstream half before its real sink exists.
//! Vector's sink of the same name serves the same purposes. The run summary counts what it took.

use crate::record::Batch;
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use serde::Deserialize;

/// Drops every record it receives; the run summary shows how many.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

impl StageConfig for BlackholeConfig {
    fn build(&self, _: &BuildContext<'_>) -> Result<Built, BuildError> {
        Ok(Built::Sink(Box::new(BlackholeSink)))
    }
}

pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn fields(&self) -> crate::topology::Fields {
        crate::topology::Fields {
            reads_nothing: true,
            ..Default::default()
        }
    }

    fn write(&mut self, _: &Batch, _: &mut Output) -> Result<(), StageError> {
        Ok(())
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        Ok(())
    }
}
