//! `type = "chart"`: a horizontal bar chart (PNG and SVG) of the top records by a value, drawn once the
//! input ends. Labels are right-aligned beside the bars, so even long genre names never overlap.

mod render;

use super::{ranked, rows_of};
use crate::record::{Batch, Value};
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
pub use render::BarChart;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Draws a horizontal bar chart of `value` per `label`, largest at the top.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartConfig {
    /// The field naming each bar, e.g. `genre`.
    pub label: String,
    /// The numeric field giving each bar's length, e.g. `avg`.
    pub value: String,
    /// Multiply values by this before drawing, e.g. `1e-9` for billions. Default 1.
    #[serde(default = "one")]
    pub scale: f64,
    /// Draw only the N largest values. Default 20.
    #[serde(default = "twenty")]
    pub top: usize,
    /// The chart title.
    #[serde(default)]
    pub title: String,
    /// The title of the value axis, e.g. `Average streams (billions)`.
    #[serde(default)]
    pub x_label: String,
    /// The title of the label axis, e.g. `Genre`.
    #[serde(default)]
    pub y_label: String,
    /// Where to write the PNG, relative to the pipeline file. At least one of `png` and `svg` is needed.
    pub png: Option<PathBuf>,
    /// Where to write the SVG, relative to the pipeline file.
    pub svg: Option<PathBuf>,
    /// Image width in pixels. Default 1200.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Image height in pixels; grows when there are many bars. Default 800.
    #[serde(default = "default_height")]
    pub height: u32,
}

fn one() -> f64 {
    1.0
}
fn twenty() -> usize {
    20
}
fn default_width() -> u32 {
    1200
}
fn default_height() -> u32 {
    800
}

impl StageConfig for ChartConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        if self.png.is_none() && self.svg.is_none() {
            return Err(BuildError::new(
                None,
                "a chart needs `png = \"...\"`, `svg = \"...\"` or both",
            ));
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err(BuildError::new(
                None,
                "`scale` must be a finite, non-zero number",
            ));
        }
        Ok(Built::Sink(Box::new(ChartSink {
            png: self.png.as_ref().map(|p| ctx.path(p)),
            svg: self.svg.as_ref().map(|p| ctx.path(p)),
            config: self.clone(),
            rows: Vec::new(),
        })))
    }
}

pub struct ChartSink {
    config: ChartConfig,
    png: Option<PathBuf>,
    svg: Option<PathBuf>,
    rows: Vec<Vec<(Arc<str>, Value)>>,
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<(), StageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StageError::with(format!("cannot create `{}`", dir.display()), e))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| StageError::with(format!("cannot write `{}`", path.display()), e))
}

impl Sink for ChartSink {
    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        self.rows.extend(rows_of(batch));
        Ok(())
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        let c = &self.config;
        let order = ranked(&self.rows, Some(&c.value), false, Some(c.top));
        let field = |row: &[(Arc<str>, Value)], name: &str| {
            row.iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, v)| v.clone())
        };
        let bars = order
            .iter()
            .filter_map(|&i| {
                let row = &self.rows[i];
                let value = field(row, &c.value)?.as_f64()? * c.scale;
                Some((
                    field(row, &c.label).unwrap_or(Value::Null).to_string(),
                    value,
                ))
            })
            .collect();
        let chart = BarChart {
            title: c.title.clone(),
            x_label: c.x_label.clone(),
            y_label: c.y_label.clone(),
            bars,
            width: c.width,
            height: c.height,
        };
        if let Some(p) = &self.png {
            write(p, &render::png(&chart))?;
        }
        if let Some(p) = &self.svg {
            write(p, render::svg(&chart).as_bytes())?;
        }
        Ok(())
    }
}
