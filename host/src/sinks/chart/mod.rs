//! `type = "chart"`: a chart (PNG and SVG) of the records, drawn with plotters once the input ends.
//! `kind = "bar"`: a horizontal bar chart of the top records by a value, largest at the top (`bar.rs`).
//! `kind = "line"`: one line per series over time, for the series with the largest mean (`line.rs`).
//! The table is checked in `config.rs`; `render.rs` holds the font, axes and outputs both share.

mod bar;
mod config;
mod line;
mod render;

use super::rows_of;
use crate::record::{Batch, Value};
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
pub use bar::BarChart;
pub use config::{ChartConfig, Kind};
use config::{Settings, Shape};
pub use line::{LineChart, Series, XKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Row = Vec<(Arc<str>, Value)>;

impl StageConfig for ChartConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let settings = self.settings()?;
        Ok(Built::Sink(Box::new(ChartSink {
            png: settings.png.as_ref().map(|p| ctx.path(p)),
            svg: settings.svg.as_ref().map(|p| ctx.path(p)),
            settings,
            rows: Vec::new(),
        })))
    }
}

pub struct ChartSink {
    settings: Settings,
    png: Option<PathBuf>,
    svg: Option<PathBuf>,
    rows: Vec<Row>,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), StageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StageError::with(format!("cannot create `{}`", dir.display()), e))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| StageError::with(format!("cannot write `{}`", path.display()), e))
}

fn field<'a>(row: &'a [(Arc<str>, Value)], name: &str) -> Option<&'a Value> {
    row.iter().find(|(n, _)| &**n == name).map(|(_, v)| v)
}

/// The bars: the `top` rows with the largest `value`, largest first, as (label, value × scale). Rows
/// without a numeric `value` are left out; NaN ranks below every number; a missing label reads "null".
fn bars(rows: &[Row], label: &str, value: &str, scale: f64, top: usize) -> Vec<(String, f64)> {
    let mut bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|row| {
            let v = field(row, value)?.as_f64()? * scale;
            let name = field(row, label).unwrap_or(&Value::Null).to_string();
            Some((name, v))
        })
        .collect();
    let rank = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    // Stable: ties keep arrival order, so output is deterministic. A negative scale ranks by the
    // drawn value, as the chart shows it.
    bars.sort_by(|a, b| rank(b.1).total_cmp(&rank(a.1)));
    bars.truncate(top);
    bars
}

/// An x value: a time (a timestamp, or RFC 3339 text) or a number.
fn x_of(v: &Value) -> Option<(XKind, f64)> {
    match v {
        Value::Time(ms) => Some((XKind::Time, *ms as f64)),
        Value::Str(s) => render::parse_rfc3339(s).map(|ms| (XKind::Time, ms as f64)),
        Value::Int(_) | Value::Float(_) => v.as_f64().map(|n| (XKind::Number, n)),
        _ => None,
    }
}

/// The lines: points (x, y × scale) per value of `series` (one series named after `y` without it),
/// sorted by x, the `top` series with the largest mean of their finite values first.
///
/// The first row with a usable x decides the axis: times or numbers; rows whose x is of the other
/// kind, or whose y is not a number, are left out. A series with two points at one x keeps the last
/// one (a window emitted again with late data). A non-finite y stays, as a gap in its line.
fn lines(
    rows: &[Row],
    (x, y, series): (&str, &str, Option<&str>),
    scale: f64,
    top: usize,
) -> (XKind, Vec<Series>) {
    let mut kind = None;
    let mut found: Vec<Series> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in rows {
        let Some((k, xv)) = field(row, x).and_then(x_of) else {
            continue;
        };
        if *kind.get_or_insert(k) != k {
            continue;
        }
        let Some(yv) = field(row, y).and_then(Value::as_f64) else {
            continue;
        };
        let name = match series {
            Some(s) => field(row, s).unwrap_or(&Value::Null).to_string(),
            None => y.to_string(),
        };
        let i = *index.entry(name.clone()).or_insert_with(|| {
            found.push(Series {
                name,
                points: Vec::new(),
            });
            found.len() - 1
        });
        found[i].points.push((xv, yv * scale));
    }
    for s in &mut found {
        // Stable: of two points at one x, the later one ends up last, and is kept.
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut kept: Vec<(f64, f64)> = Vec::with_capacity(s.points.len());
        for p in s.points.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => kept.push(p),
            }
        }
        s.points = kept;
    }
    let mean = |s: &Series| {
        let finite: Vec<f64> = s
            .points
            .iter()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .collect();
        if finite.is_empty() {
            f64::NEG_INFINITY
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        }
    };
    // Stable, so equal means keep the order the series first appeared in.
    found.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    found.truncate(top);
    (kind.unwrap_or(XKind::Number), found)
}

impl Sink for ChartSink {
    fn fields(&self) -> crate::topology::Fields {
        let reads = match &self.settings.shape {
            Shape::Bar { label, value } => vec![label.clone(), value.clone()],
            Shape::Line { x, y, series } => [x, y].into_iter().chain(series).cloned().collect(),
        };
        crate::topology::Fields {
            reads,
            ..Default::default()
        }
    }

    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        self.rows.extend(rows_of(batch));
        Ok(())
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        let s = &self.settings;
        let (png, svg) = match &s.shape {
            Shape::Bar { label, value } => {
                let chart = BarChart {
                    title: s.title.clone(),
                    x_label: s.x_label.clone(),
                    y_label: s.y_label.clone(),
                    bars: bars(&self.rows, label, value, s.scale, s.top),
                    width: s.width,
                    height: s.height,
                };
                (
                    self.png.as_ref().map(|_| bar::png(&chart)),
                    self.svg.as_ref().map(|_| bar::svg(&chart)),
                )
            }
            Shape::Line { x, y, series } => {
                let fields = (x.as_str(), y.as_str(), series.as_deref());
                let (x_kind, series) = lines(&self.rows, fields, s.scale, s.top);
                let chart = LineChart {
                    title: s.title.clone(),
                    x_label: s.x_label.clone(),
                    y_label: s.y_label.clone(),
                    x_kind,
                    series,
                    width: s.width,
                    height: s.height,
                };
                (
                    self.png.as_ref().map(|_| line::png(&chart)),
                    self.svg.as_ref().map(|_| line::svg(&chart)),
                )
            }
        };
        if let (Some(path), Some(bytes)) = (&self.png, png) {
            write(path, &bytes.map_err(StageError::msg)?)?;
        }
        if let (Some(path), Some(text)) = (&self.svg, svg) {
            write(path, text.map_err(StageError::msg)?.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[(&str, Value)]) -> Row {
        fields
            .iter()
            .map(|(n, v)| (Arc::from(*n), v.clone()))
            .collect()
    }

    fn genre(name: &str, avg: f64) -> Row {
        row(&[
            ("genre", Value::Str(name.into())),
            ("avg", Value::Float(avg)),
        ])
    }

    #[test]
    fn bars_are_the_largest_first_and_scaled() {
        let rows = vec![
            genre("Rock", 1.2e9),
            genre("Jazz", 1.9e9),
            row(&[("genre", Value::Str("no value".into()))]),
            genre("Folk", 1.5e9),
            genre("Broken", f64::NAN),
        ];
        let b = bars(&rows, "genre", "avg", 1e-9, 20);
        let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
        // NaN sorts below every number (total order), and a row without the value is left out.
        assert_eq!(names, ["Jazz", "Folk", "Rock", "Broken"]);
        assert!((b[0].1 - 1.9).abs() < 1e-12);
        assert!(b[3].1.is_nan());
        assert_eq!(bars(&rows, "genre", "avg", 1e-9, 2).len(), 2);
    }

    fn point(t: &str, g: &str, avg: f64) -> Row {
        row(&[
            ("window_start", Value::Str(t.into())),
            ("genre", Value::Str(g.into())),
            ("avg", Value::Float(avg)),
        ])
    }

    #[test]
    fn lines_keep_the_series_with_the_largest_mean() {
        let rows = vec![
            point("2024-06-01T12:01:00.000Z", "Rock", 1.0),
            point("2024-06-01T12:00:00.000Z", "Rock", 3.0), // mean 2
            point("2024-06-01T12:00:00.000Z", "Jazz", 2.5), // mean 2.5
            point("2024-06-01T12:00:00.000Z", "Folk", 0.5),
            point("2024-06-01T12:01:00.000Z", "Folk", 9.0), // mean 4.75
            point("2024-06-01T12:02:00.000Z", "Pop", 1.0),  // mean 1
            point("2024-06-01T12:03:00.000Z", "Pop", f64::NAN),
        ];
        let (kind, series) = lines(&rows, ("window_start", "avg", Some("genre")), 1.0, 3);
        assert_eq!(kind, XKind::Time);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Folk", "Jazz", "Rock"]);
        // Sorted by time, whatever the arrival order.
        let noon = 1_717_243_200_000.0;
        assert_eq!(series[2].points, [(noon, 3.0), (noon + 60_000.0, 1.0)]);

        // The NaN does not drag Pop's mean down to nothing: it is a gap, and Pop ranks by its 1.0.
        let (_, all) = lines(&rows, ("window_start", "avg", Some("genre")), 1.0, 10);
        assert_eq!(all[3].name, "Pop");
        assert_eq!(all[3].points.len(), 2);
    }

    #[test]
    fn lines_take_timestamps_and_keep_the_last_point_at_one_x() {
        let at = |ms: i64, avg: f64| row(&[("t", Value::Time(ms)), ("avg", Value::Float(avg))]);
        let rows = vec![
            at(120_000, 1.0),
            at(60_000, 2.0),
            at(120_000, 5.0),
            row(&[("t", Value::Str("soon".into())), ("avg", Value::Float(7.0))]),
        ];
        let (kind, series) = lines(&rows, ("t", "avg", None), 2.0, 5);
        assert_eq!(kind, XKind::Time);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "avg");
        assert_eq!(series[0].points, [(60_000.0, 4.0), (120_000.0, 10.0)]);
    }

    #[test]
    fn lines_over_numbers_skip_rows_of_another_kind() {
        let rows = vec![
            row(&[("year", Value::Int(1975)), ("plays", Value::Int(3))]),
            row(&[
                ("year", Value::Str("2024-06-01".into())),
                ("plays", Value::Int(4)),
            ]),
            row(&[
                ("year", Value::Float(1980.0)),
                ("plays", Value::Str("x".into())),
            ]),
            row(&[("year", Value::Int(1985)), ("plays", Value::Float(1.5))]),
        ];
        let (kind, series) = lines(&rows, ("year", "plays", None), 1.0, 5);
        assert_eq!(kind, XKind::Number);
        assert_eq!(series[0].points, [(1975.0, 3.0), (1985.0, 1.5)]);
    }
}
