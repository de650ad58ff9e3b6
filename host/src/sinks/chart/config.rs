//! The `chart` stage's `pipeline.toml` table, checked into [`Settings`].

use crate::topology::BuildError;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// Draws a chart (PNG, SVG or both) of the records once the input ends: a horizontal bar chart of
/// `value` per `label`, largest at the top (`kind = "bar"`), or one line of `y` over `x` per `series`
/// (`kind = "line"`). Text is drawn with DejaVu Sans, built into tributary, so a PNG looks the same on
/// every machine.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartConfig {
    /// `"bar"` (default): one horizontal bar per record, largest at the top, its value written at its
    /// end. `"line"`: one line per series over time (or over any number), with a legend.
    #[serde(default)]
    pub kind: Option<Spanned<Kind>>,
    /// Bar charts: the field naming each bar, e.g. `genre`. Required.
    pub label: Option<Spanned<String>>,
    /// Bar charts: the numeric field giving each bar's length, e.g. `avg`. Required. A value that is
    /// not finite (NaN, ±infinity) keeps its row and shows `n/a`, without a bar.
    pub value: Option<Spanned<String>>,
    /// Line charts: the field along the horizontal axis, e.g. `window_start`. Timestamps (window
    /// bounds, or RFC 3339 text like `2024-06-01T12:00:00Z`) give a time axis in UTC; numbers give a
    /// number axis. Required.
    pub x: Option<Spanned<String>>,
    /// Line charts: the numeric field along the vertical axis, e.g. `avg`. Required.
    pub y: Option<Spanned<String>>,
    /// Line charts: the field whose values name the lines, e.g. `genre`: one line per distinct value.
    /// Default: none, a single line named after `y`.
    pub series: Option<Spanned<String>>,
    /// Multiply values (`value`, or `y`) by this before drawing, e.g. `1e-9` for billions. Default 1.
    pub scale: Option<Spanned<f64>>,
    /// Bar charts: draw only the N largest values (default 20). Line charts: draw only the N series
    /// with the largest mean of `y` (default 5, at most 10, one colour each).
    pub top: Option<Spanned<usize>>,
    /// The chart title, drawn above it. Default: none.
    #[serde(default)]
    pub title: String,
    /// The title of the horizontal axis, e.g. `Average streams (billions)` for a bar chart or
    /// `Window start` for a line chart (a time axis adds the time zone and the date). Default: none.
    #[serde(default)]
    pub x_label: String,
    /// The title of the vertical axis, e.g. `Genre` for a bar chart or `Average streams (billions)`
    /// for a line chart. Default: none.
    #[serde(default)]
    pub y_label: String,
    /// Where to write the PNG, relative to the pipeline file. At least one of `png` and `svg` is needed.
    pub png: Option<PathBuf>,
    /// Where to write the SVG, relative to the pipeline file.
    pub svg: Option<PathBuf>,
    /// Image width in pixels, 300 to 8192. Default 1200; the image grows wider when long labels need it.
    pub width: Option<Spanned<u32>>,
    /// Image height in pixels, 200 to 8192. Default 800; the image grows taller when many bars need it.
    pub height: Option<Spanned<u32>>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Bar,
    Line,
}

/// The most series a line chart draws: one colour each.
pub const MAX_SERIES: usize = super::render::PALETTE.len();
const SIDES: (Range<u32>, Range<u32>) = (300..8193, 200..8193);

/// What to draw, checked.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Shape {
    Bar {
        label: String,
        value: String,
    },
    Line {
        x: String,
        y: String,
        series: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub shape: Shape,
    pub scale: f64,
    pub top: usize,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub png: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub width: u32,
    pub height: u32,
}

impl ChartConfig {
    /// Checks the table, reporting every problem at once (pointing at the first).
    pub(super) fn settings(&self) -> Result<Settings, BuildError> {
        let mut problems: Vec<(Option<Range<usize>>, String)> = Vec::new();
        let kind = self.kind.as_ref().map_or(Kind::Bar, |k| *k.get_ref());
        let at = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.span());
        let field = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.get_ref().clone());

        let shape = match kind {
            Kind::Bar => {
                for (name, f) in [("x", &self.x), ("y", &self.y), ("series", &self.series)] {
                    if f.is_some() {
                        problems.push((at(f), format!(
                            "`{name}` is for `kind = \"line\"`; a bar chart takes `label` and `value` (or set `kind = \"line\"`)"
                        )));
                    }
                }
                let mut need = |name: &str, example: &str, f: &Option<Spanned<String>>| {
                    field(f).unwrap_or_else(|| {
                        problems.push((None, format!("a bar chart needs `{name}`, {example}")));
                        String::new()
                    })
                };
                Shape::Bar {
                    label: need(
                        "label",
                        "the field naming each bar, like `label = \"genre\"`",
                        &self.label,
                    ),
                    value: need(
                        "value",
                        "the numeric field giving each bar's length, like `value = \"avg\"`",
                        &self.value,
                    ),
                }
            }
            Kind::Line => {
                for (name, f) in [("label", &self.label), ("value", &self.value)] {
                    if f.is_some() {
                        problems.push((at(f), format!(
                            "`{name}` is for `kind = \"bar\"`; a line chart takes `x`, `y` and `series`"
                        )));
                    }
                }
                let mut need = |name: &str, example: &str, f: &Option<Spanned<String>>| {
                    field(f).unwrap_or_else(|| {
                        problems.push((None, format!("a line chart needs `{name}`, {example}")));
                        String::new()
                    })
                };
                Shape::Line {
                    x: need(
                        "x",
                        "the field along the horizontal axis, like `x = \"window_start\"`",
                        &self.x,
                    ),
                    y: need(
                        "y",
                        "the numeric field along the vertical axis, like `y = \"avg\"`",
                        &self.y,
                    ),
                    series: field(&self.series),
                }
            }
        };
        if let Some(f) = [&self.label, &self.value, &self.x, &self.y, &self.series]
            .into_iter()
            .flatten()
            .find(|f| f.get_ref().is_empty())
        {
            problems.push((Some(f.span()), "a field name cannot be empty".into()));
        }

        if self.png.is_none() && self.svg.is_none() {
            problems.push((
                None,
                "a chart needs `png = \"...\"`, `svg = \"...\"` or both: the files to write".into(),
            ));
        }
        let scale = self.scale.as_ref().map_or(1.0, |s| *s.get_ref());
        if !scale.is_finite() || scale == 0.0 {
            problems.push((
                self.scale.as_ref().map(Spanned::span),
                "`scale` must be a finite, non-zero number, like `1e-9` for billions".into(),
            ));
        }
        let top = match (kind, &self.top) {
            (Kind::Bar, None) => 20,
            (Kind::Line, None) => 5,
            (_, Some(t)) if *t.get_ref() == 0 => {
                problems.push((Some(t.span()), "`top` must be at least 1".into()));
                1
            }
            (Kind::Line, Some(t)) if *t.get_ref() > MAX_SERIES => {
                problems.push((Some(t.span()), format!(
                    "`top` can be at most {MAX_SERIES} for a line chart, one colour per series; use several charts for more"
                )));
                MAX_SERIES
            }
            (_, Some(t)) => *t.get_ref(),
        };
        let mut side =
            |name: &str, value: &Option<Spanned<u32>>, default: u32, range: Range<u32>| match value
            {
                None => default,
                Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
                Some(v) => {
                    problems.push((
                        Some(v.span()),
                        format!(
                            "`{name}` must be {} to {} pixels",
                            range.start,
                            range.end - 1
                        ),
                    ));
                    default
                }
            };
        let width = side("width", &self.width, 1200, SIDES.0);
        let height = side("height", &self.height, 800, SIDES.1);

        if let Some((span, _)) = problems.first() {
            let span = span.clone();
            let message = problems
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BuildError::new(span, message));
        }
        Ok(Settings {
            shape,
            scale,
            top,
            title: self.title.clone(),
            x_label: self.x_label.clone(),
            y_label: self.y_label.clone(),
            png: self.png.clone(),
            svg: self.svg.clone(),
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ChartConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    fn check(toml_text: &str) -> Result<Settings, String> {
        parse(toml_text)
            .expect("parses")
            .settings()
            .map_err(|e| e.message)
    }

    #[test]
    fn a_bar_chart_keeps_todays_defaults() {
        let s = check("label = \"genre\"\nvalue = \"avg\"\npng = \"a.png\"").unwrap();
        assert_eq!(
            s.shape,
            Shape::Bar {
                label: "genre".into(),
                value: "avg".into()
            }
        );
        assert_eq!((s.scale, s.top, s.width, s.height), (1.0, 20, 1200, 800));
        assert!(s.svg.is_none() && s.title.is_empty());
    }

    #[test]
    fn a_line_chart_needs_x_and_y_and_takes_series() {
        let s = check("kind = \"line\"\nx = \"window_start\"\ny = \"avg\"\nseries = \"genre\"\nsvg = \"a.svg\"").unwrap();
        assert_eq!(
            s.shape,
            Shape::Line {
                x: "window_start".into(),
                y: "avg".into(),
                series: Some("genre".into())
            }
        );
        assert_eq!(s.top, 5);
        let s = check("kind = \"line\"\nx = \"t\"\ny = \"v\"\nsvg = \"a.svg\"").unwrap();
        assert!(matches!(s.shape, Shape::Line { series: None, .. }));

        let e = check("kind = \"line\"\nseries = \"genre\"\nsvg = \"a.svg\"").unwrap_err();
        assert!(
            e.contains("a line chart needs `x`") && e.contains("a line chart needs `y`"),
            "{e}"
        );
    }

    #[test]
    fn fields_of_the_other_kind_are_refused() {
        let e = check("kind = \"line\"\nx = \"t\"\ny = \"v\"\nlabel = \"genre\"\nsvg = \"a.svg\"")
            .unwrap_err();
        assert!(e.starts_with("`label` is for `kind = \"bar\"`"), "{e}");
        let e = check("label = \"genre\"\nvalue = \"avg\"\nseries = \"genre\"\nsvg = \"a.svg\"")
            .unwrap_err();
        assert!(e.starts_with("`series` is for `kind = \"line\"`"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = check("value = \"avg\"\nscale = 0.0\ntop = 0\nwidth = 10").unwrap_err();
        for part in [
            "a bar chart needs `label`",
            "a chart needs `png",
            "`scale` must be a finite, non-zero number",
            "`top` must be at least 1",
            "`width` must be 300 to 8192 pixels",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        assert_eq!(e, e.to_lowercase(), "messages are lowercase");
    }

    #[test]
    fn a_line_chart_has_at_most_ten_series() {
        let e = check(
            "kind = \"line\"\nx = \"t\"\ny = \"v\"\nseries = \"s\"\ntop = 11\nsvg = \"a.svg\"",
        )
        .unwrap_err();
        assert!(e.contains("`top` can be at most 10"), "{e}");
        let s = check(
            "kind = \"line\"\nx = \"t\"\ny = \"v\"\nseries = \"s\"\ntop = 10\nsvg = \"a.svg\"",
        )
        .unwrap();
        assert_eq!(s.top, 10);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let e = parse("label = \"genre\"\nvalue = \"avg\"\npng = \"a.png\"\ncolour = \"red\"")
            .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse("kind = \"pie\"").unwrap_err();
        assert!(
            e.contains("unknown variant `pie`, expected `bar` or `line`"),
            "{e}"
        );
    }
}
