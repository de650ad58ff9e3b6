//! `kind = "line"`: one line per series over `x` (time or a number), with a legend naming the series
//! in the order given (the sink passes the largest mean first).
//!
//! Decisions worth knowing:
//! - Every point gets a marker, so a series with a single point, or points far apart, still shows.
//!   A point whose value is not finite breaks its line there; it is not drawn.
//! - The value axis fits the data (it does not force 0 in) with round ticks; the time axis has ticks at
//!   round UTC times (see `TimeAxis`), and its title says the date when every tick shares it.
//! - The legend sits right of the plot, never over a line; names wider than 30% of the requested width
//!   (at least 160 px) are shortened with "…".
//! - In the SVG, each run of a series between gaps is one `<polyline>` with `stroke-width="2"`, each
//!   point one `<circle>`, and each legend entry a square `<rect>` in the series' colour.

use super::render::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

const LINE_WIDTH: u32 = 2;
const MARKER: i32 = 3;
/// Legend: the colour square, and the height of one entry.
const SWATCH: i32 = 14;
const ENTRY_H: i32 = 28;
const MIN_PLOT_W: u32 = 240;
const MIN_PLOT_H: u32 = 160;
const NO_DATA: &str = "No data";

/// What the horizontal axis holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XKind {
    /// Milliseconds since the Unix epoch, shown as UTC dates and times.
    Time,
    Number,
}

/// One named line: its points sorted by x.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    /// Axis under the plot, e.g. "Window start".
    pub x_label: String,
    /// Axis beside the plot, e.g. "Average streams (billions)".
    pub y_label: String,
    pub x_kind: XKind,
    /// In legend order; at most `PALETTE.len()` (the config checks it).
    pub series: Vec<Series>,
    pub width: u32,
    pub height: u32,
}

enum XAxis {
    Time(TimeAxis),
    Number(Axis),
}

impl XAxis {
    fn range(&self) -> (f64, f64) {
        match self {
            XAxis::Time(a) => (a.lo as f64, a.hi as f64),
            XAxis::Number(a) => (a.lo, a.hi),
        }
    }
    fn ticks(&self) -> Vec<f64> {
        match self {
            XAxis::Time(a) => a.values.iter().map(|&t| t as f64).collect(),
            XAxis::Number(a) => a.values.clone(),
        }
    }
    fn label(&self, v: f64) -> String {
        match self {
            XAxis::Time(a) => a.label(v.round() as i64),
            XAxis::Number(a) => a.label(v),
        }
    }
}

struct Layout {
    width: u32,
    height: u32,
    title: String,
    title_h: u32,
    x_title: String,
    names: Vec<String>,
    x: XAxis,
    y: Axis,
    left_w: u32,
    bottom_h: u32,
    legend_w: u32,
}

impl Layout {
    fn new(c: &LineChart) -> Self {
        let req_w = c.width.clamp(1, MAX_SIDE);
        let req_h = c.height.clamp(1, MAX_SIDE);
        let points = || c.series.iter().flat_map(|s| s.points.iter());
        let finite = || points().filter(|p| p.0.is_finite() && p.1.is_finite());
        let range = |vs: &mut dyn Iterator<Item = f64>| {
            vs.fold(None, |r: Option<(f64, f64)>, v| {
                Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
            })
        };
        let (x_min, x_max) = range(&mut finite().map(|p| p.0)).unwrap_or((0.0, 1.0));
        let (y_min, y_max) = range(&mut finite().map(|p| p.1)).unwrap_or((0.0, 1.0));
        let y = Axis::new(y_min, y_max, false);

        let name_cap = (req_w * 3 / 10).max(160);
        let names: Vec<String> = c
            .series
            .iter()
            .map(|s| fit(&s.name, name_cap, LABEL_SIZE))
            .collect();
        let names_w = names.iter().map(|n| text_width(n, LABEL_SIZE)).max();
        let legend_w = names_w.map_or(0, |w| GAP + SWATCH as u32 + GAP + w + MARGIN);

        let y_ticks_w = y
            .values
            .iter()
            .map(|&v| text_width(&y.label(v), TICK_SIZE))
            .max()
            .unwrap_or(0);
        let y_title_w = if c.y_label.is_empty() {
            0
        } else {
            LABEL_SIZE as u32 + GAP
        };
        let left_w = y_title_w + y_ticks_w + GAP + GAP / 2;
        let width = req_w
            .max(MARGIN + left_w + MIN_PLOT_W + legend_w + MARGIN)
            .min(MAX_SIDE);

        // As many x ticks as fit their labels side by side.
        let plot_w = width
            .saturating_sub(MARGIN + left_w + legend_w + MARGIN)
            .max(1);
        let x = match c.x_kind {
            XKind::Time => {
                let sample = text_width("06-01 12:00", TICK_SIZE) + 3 * GAP;
                let ticks = (plot_w / sample).clamp(2, 6) as usize;
                XAxis::Time(TimeAxis::new(x_min as i64, x_max as i64, ticks))
            }
            XKind::Number => XAxis::Number(Axis::new(x_min, x_max, false)),
        };
        let x_title = match (&x, c.x_label.is_empty()) {
            (XAxis::Time(t), empty) => {
                let zone = match &t.date {
                    Some(d) => format!("UTC, {d}"),
                    None => "UTC".to_string(),
                };
                if empty {
                    zone
                } else {
                    format!("{} ({zone})", c.x_label)
                }
            }
            (XAxis::Number(_), _) => c.x_label.clone(),
        };

        let title = fit(&c.title, width - 2 * MARGIN, TITLE_SIZE);
        let title_h = if title.is_empty() {
            0
        } else {
            TITLE_SIZE as u32 + GAP
        };
        let x_title_h = if x_title.is_empty() {
            0
        } else {
            LABEL_SIZE as u32 + GAP
        };
        let bottom_h = TICK_SIZE as u32 + 2 * GAP + x_title_h;
        let legend_h = (c.series.len() as u32 * ENTRY_H as u32).max(MIN_PLOT_H);
        let height = req_h
            .max(MARGIN + title_h + GAP + legend_h + bottom_h + MARGIN)
            .min(MAX_SIDE);
        Layout {
            width,
            height,
            x_title: fit(&x_title, width - 2 * MARGIN, LABEL_SIZE),
            title,
            title_h,
            names,
            x,
            y,
            left_w,
            bottom_h,
            legend_w,
        }
    }
}

/// The chart as a standalone SVG document.
pub fn svg(chart: &LineChart) -> Result<String, String> {
    let l = Layout::new(chart);
    super::render::svg((l.width, l.height), |root| draw(root, chart, &l))
}

/// The chart as an 8-bit RGB PNG.
pub fn png(chart: &LineChart) -> Result<Vec<u8>, String> {
    let l = Layout::new(chart);
    super::render::png((l.width, l.height), |root| draw(root, chart, &l))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart, l: &Layout) -> Drawn {
    super::render::background_and_title(root, &l.title, l.width)?;

    let (x_lo, x_hi) = l.x.range();
    let x_label = |v: &f64| l.x.label(*v);
    let y_label = |v: &f64| l.y.label(*v);
    let mut chart = ChartBuilder::on(root)
        .margin_top(MARGIN + l.title_h + GAP)
        .margin_left(MARGIN)
        .margin_bottom(MARGIN)
        .margin_right(l.legend_w + MARGIN)
        .x_label_area_size(l.bottom_h)
        .y_label_area_size(l.left_w)
        .build_cartesian_2d(
            Ticked {
                lo: x_lo,
                hi: x_hi,
                ticks: l.x.ticks(),
            },
            Ticked {
                lo: l.y.lo,
                hi: l.y.hi,
                ticks: l.y.values.clone(),
            },
        )
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .x_labels(l.x.ticks().len())
        .y_labels(l.y.values.len())
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_label_style(font(TICK_SIZE, MUTED, HPos::Center, VPos::Top))
        .y_label_style(font(TICK_SIZE, MUTED, HPos::Right, VPos::Center))
        .axis_desc_style(font(LABEL_SIZE, TEXT, HPos::Center, VPos::Top))
        .x_desc(l.x_title.as_str())
        .y_desc(c.y_label.as_str())
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .set_all_tick_mark_size(5)
        .draw()
        .map_err(drawing_error)?;

    for (series, color) in c.series.iter().zip(PALETTE.iter().cycle()) {
        // Runs of finite points; a non-finite value breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(x, y) in &series.points {
            if x.is_finite() && y.is_finite() {
                runs.last_mut().expect("never empty").push((x, y));
            } else if !runs.last().expect("never empty").is_empty() {
                runs.push(Vec::new());
            }
        }
        let style = color.stroke_width(LINE_WIDTH);
        let lines = runs
            .iter()
            .filter(|run| run.len() > 1)
            .map(|run| PathElement::new(run.clone(), style));
        chart.draw_series(lines).map_err(drawing_error)?;
        let markers = runs
            .iter()
            .flatten()
            .map(|&p| Circle::new(p, MARKER, color.filled()));
        chart.draw_series(markers).map_err(drawing_error)?;
    }

    let area = chart.plotting_area().get_pixel_range();
    if c.series.iter().all(|s| s.points.is_empty()) {
        let center = (
            (area.0.start + area.0.end) / 2,
            (area.1.start + area.1.end) / 2,
        );
        text(
            root,
            NO_DATA,
            center,
            &font(LABEL_SIZE, MUTED, HPos::Center, VPos::Center),
        )?;
    }

    // The legend, right of the plot, from its top.
    let name_style = font(LABEL_SIZE, TEXT, HPos::Left, VPos::Center);
    let left = area.0.end + GAP as i32;
    for (i, (name, color)) in l.names.iter().zip(PALETTE.iter().cycle()).enumerate() {
        let center_y = area.1.start + ENTRY_H / 2 + i as i32 * ENTRY_H;
        let top = center_y - SWATCH / 2;
        root.draw(&Rectangle::new(
            [(left, top), (left + SWATCH, top + SWATCH)],
            color.filled(),
        ))
        .map_err(drawing_error)?;
        text(
            root,
            name,
            (left + SWATCH + GAP as i32, center_y),
            &name_style,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::chart::render::tests::*;

    const MIN: f64 = 60_000.0;
    const NOON: f64 = 1_717_243_200_000.0;

    fn chart(series: &[(&str, &[f64])]) -> LineChart {
        LineChart {
            title: "Average streams per minute".into(),
            x_label: "Window start".into(),
            y_label: "Average streams (billions)".into(),
            x_kind: XKind::Time,
            series: series
                .iter()
                .map(|(name, ys)| Series {
                    name: name.to_string(),
                    points: ys
                        .iter()
                        .enumerate()
                        .map(|(i, &y)| (NOON + i as f64 * MIN, y))
                        .collect(),
                })
                .collect(),
            width: 1200,
            height: 700,
        }
    }

    fn lines(svg: &str) -> Vec<&str> {
        elements(svg, "polyline")
            .into_iter()
            .filter(|p| attr(p, "stroke-width") == LINE_WIDTH.to_string())
            .collect()
    }

    fn color(c: &RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn one_line_per_series_in_its_colour_with_a_legend() {
        let c = chart(&[
            ("Jazz/Big Band", &[2.2, 1.8, 1.9]),
            ("Bubblegum Pop", &[1.8, 1.8, 2.2, 1.4]),
            ("Folk Rock", &[1.3, 1.9]),
        ]);
        let doc = svg(&c).unwrap();
        let lines = lines(&doc);
        assert_eq!(lines.len(), 3);
        for (line, color_) in lines.iter().zip(&PALETTE) {
            assert_eq!(attr(line, "stroke"), color(color_));
        }
        assert_eq!(
            lines[1].matches(',').count(),
            4,
            "one vertex per point: {}",
            lines[1]
        );
        assert_eq!(elements(&doc, "circle").len(), 9, "one marker per point");
        // The legend names the series in order, each beside a square of its colour.
        let texts = texts(&doc);
        let names: Vec<&String> = texts
            .iter()
            .filter(|t| c.series.iter().any(|s| &s.name == *t))
            .collect();
        assert_eq!(names, ["Jazz/Big Band", "Bubblegum Pop", "Folk Rock"]);
        let swatches = elements(&doc, "rect")
            .into_iter()
            .filter(|r| PALETTE[..3].iter().any(|p| attr(r, "fill") == color(p)))
            .count();
        assert_eq!(swatches, 3);
        // Times on the x axis, the date in its title.
        assert!(
            texts.iter().any(|t| t == "12:00") && texts.iter().any(|t| t == "12:03"),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t == "Window start (UTC, 2024-06-01)"),
            "{texts:?}"
        );
    }

    #[test]
    fn later_points_are_further_right_and_higher_values_higher() {
        let doc = svg(&chart(&[("a", &[1.0, 3.0, 2.0])])).unwrap();
        let line = lines(&doc)[0];
        let points: Vec<(f64, f64)> = attr(line, "points")
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 3);
        assert!(points[0].0 < points[1].0 && points[1].0 < points[2].0);
        // SVG y grows downwards: 3.0 is highest, 1.0 lowest.
        assert!(
            points[1].1 < points[2].1 && points[2].1 < points[0].1,
            "{points:?}"
        );
    }

    #[test]
    fn a_non_finite_value_breaks_the_line() {
        let doc = svg(&chart(&[("a", &[1.0, 2.0, f64::NAN, 2.0, 1.0])])).unwrap();
        assert_eq!(lines(&doc).len(), 2);
        assert_eq!(elements(&doc, "circle").len(), 4);
    }

    #[test]
    fn numbers_on_the_x_axis() {
        let c = LineChart {
            x_kind: XKind::Number,
            series: vec![Series {
                name: "plays".into(),
                points: vec![(1975.0, 1.0), (1985.0, 2.0), (1995.0, 1.5)],
            }],
            ..chart(&[])
        };
        let texts = texts(&svg(&c).unwrap());
        assert!(texts.iter().any(|t| t == "1980"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "Window start"));
    }

    #[test]
    fn png_shows_every_series_colour() {
        let c = chart(&[("a", &[1.0, 2.0]), ("b", &[2.0, 1.0]), ("c", &[1.5, 1.5])]);
        let (w, h, pixels) = decode(&png(&c).unwrap());
        assert_eq!((w, h), (1200, 700));
        for p in &PALETTE[..3] {
            assert!(pixels.chunks(3).any(|px| px == [p.0, p.1, p.2]), "{p:?}");
        }
    }

    #[test]
    fn edge_cases_render() {
        let long =
            "Música Popular Brasileira / Tropicália / Bossa Nova / MPB dos anos setenta e oitenta";
        let cases = [
            chart(&[]),
            chart(&[("single point", &[1.0])]),
            chart(&[("flat", &[0.0, 0.0, 0.0])]),
            chart(&[(long, &[1.0, 2.0]), ("日本語", &[2.0, 1.0])]),
            chart(&[("all nan", &[f64::NAN, f64::INFINITY])]),
            LineChart {
                width: 0,
                height: 0,
                ..chart(&[("a", &[1.0, 2.0])])
            },
        ];
        for c in &cases {
            let (w, h, _) = decode(&png(c).unwrap());
            assert!(w >= c.width && h >= c.height);
            let doc = svg(c).unwrap();
            assert!(doc.trim_end().ends_with("</svg>"));
        }
        let texts = texts(&svg(&cases[3]).unwrap());
        let short = texts.iter().find(|t| t.starts_with("Música")).unwrap();
        assert!(short.ends_with('…'), "{short}");
        assert!(texts.iter().any(|t| t == "日本語"));
    }
}
