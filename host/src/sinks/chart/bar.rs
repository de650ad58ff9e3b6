//! `kind = "bar"`: a horizontal bar chart, one bar per (label, value), drawn top to bottom in the
//! given order (the sink passes the largest first).
//!
//! Decisions worth knowing:
//! - Negative values are supported: the axis always includes 0 and every bar grows from the zero line,
//!   to the right or to the left.
//! - Non-finite values (NaN, ±inf) keep their row and label, show "n/a" and get no bar; they do not
//!   influence the axis. In the SVG, bars are the only `<rect>`s filled with [`BAR`].
//! - Labels sit right-aligned left of the plot, values right of each bar's end. Labels wider than 40%
//!   of the requested width (at least 200 px) are shortened with "…".
//! - The canvas grows past the requested size when needed: taller so each row is at least `MIN_ROW` px
//!   (labels never overlap), wider so the plot keeps `MIN_PLOT_W` px.

use super::render::*;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

pub(super) const BAR: RGBColor = RGBColor(0x46, 0x82, 0xB4); // steel blue

/// Space between the end of a bar and its value.
const VALUE_GAP: u32 = 8;
/// One label plus breathing room; rows never get thinner than this.
const MIN_ROW: u32 = 28;
/// Share of a row filled by its bar; the rest separates neighbouring bars.
const BAR_FILL: f64 = 0.72;
/// Keeps a chart with one or two bars from turning into slabs.
const MAX_BAR: f64 = 56.0;
const MIN_PLOT_W: u32 = 240;
const MIN_PLOT_H: u32 = 120;
const NO_DATA: &str = "No data";

/// A horizontal bar chart: one bar per (label, value), drawn in the given order from the top.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    /// Axis under the bars, e.g. "Average streams (billions)".
    pub x_label: String,
    /// Axis beside the labels, e.g. "Genre" (drawn vertically).
    pub y_label: String,
    pub bars: Vec<(String, f64)>,
    /// Pixels, e.g. 1200 × 800; the canvas grows if the bars need more room.
    pub width: u32,
    pub height: u32,
}

/// Where everything goes, in pixels, shared by both outputs.
struct Layout {
    width: u32,
    height: u32,
    title: String,
    title_h: u32,
    labels: Vec<String>,
    values: Vec<String>,
    /// Width of the area left of the plot: the y axis title and the labels.
    left_w: u32,
    /// Room right of the plot for the values.
    right_w: u32,
    /// Height of the area under the plot: tick labels and the x axis title.
    bottom_h: u32,
    axis: Axis,
}

impl Layout {
    fn new(c: &BarChart) -> Self {
        let req_w = c.width.clamp(1, MAX_SIDE);
        let req_h = c.height.clamp(1, MAX_SIDE);
        let finite = c.bars.iter().map(|b| b.1).filter(|v| v.is_finite());
        let (min, max) = finite.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let axis = Axis::new(min, max, true);

        let label_cap = (req_w * 2 / 5).max(200);
        let labels: Vec<String> = c
            .bars
            .iter()
            .map(|(l, _)| fit(l, label_cap, LABEL_SIZE))
            .collect();
        let values: Vec<String> = c.bars.iter().map(|b| format_value(b.1)).collect();
        let widest = |texts: &[String], size| texts.iter().map(|t| text_width(t, size)).max();
        let label_w = widest(&labels, LABEL_SIZE).unwrap_or(0);
        let value_w = widest(&values, TICK_SIZE).unwrap_or(0);
        let last_tick_w = axis
            .values
            .last()
            .map_or(0, |&v| text_width(&axis.label(v), TICK_SIZE));

        let y_title_w = if c.y_label.is_empty() {
            0
        } else {
            LABEL_SIZE as u32 + GAP
        };
        let left_w = y_title_w + label_w + GAP + GAP / 2;
        let right_w = (value_w + VALUE_GAP).max(last_tick_w / 2) + MARGIN;
        let width = req_w
            .max(MARGIN + left_w + MIN_PLOT_W + right_w)
            .min(MAX_SIDE);

        let title_size = TITLE_SIZE;
        let title = fit(&c.title, width - 2 * MARGIN, title_size);
        let title_h = if title.is_empty() {
            0
        } else {
            title_size as u32 + GAP
        };
        let x_title_h = if c.x_label.is_empty() {
            0
        } else {
            LABEL_SIZE as u32 + GAP
        };
        let bottom_h = TICK_SIZE as u32 + 2 * GAP + x_title_h;
        let plot_h = (c.bars.len() as u32 * MIN_ROW).max(MIN_PLOT_H);
        let height = req_h
            .max(MARGIN + title_h + GAP + plot_h + bottom_h + MARGIN)
            .min(MAX_SIDE);
        Layout {
            width,
            height,
            title,
            title_h,
            labels,
            values,
            left_w,
            right_w,
            bottom_h,
            axis,
        }
    }
}

/// The chart as a standalone SVG document.
pub fn svg(chart: &BarChart) -> Result<String, String> {
    let l = Layout::new(chart);
    super::render::svg((l.width, l.height), |root| draw(root, chart, &l))
}

/// The chart as an 8-bit RGB PNG.
pub fn png(chart: &BarChart) -> Result<Vec<u8>, String> {
    let l = Layout::new(chart);
    super::render::png((l.width, l.height), |root| draw(root, chart, &l))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &BarChart, l: &Layout) -> Drawn {
    super::render::background_and_title(root, &l.title, l.width)?;

    let n = c.bars.len();
    // An empty chart still gets its axes, around one empty row.
    let rows = n.max(1) as i32;
    let axis = &l.axis;
    let x_label = |v: &f64| axis.label(*v);
    // Row 0 is the bottom one; the first bar goes on top. Ticks sit at the rows' centres.
    let row_of = |k: usize| f64::from(rows - 1 - k as i32) + 0.5;
    let y_label = |v: &f64| {
        let k = rows - 1 - v.floor() as i32;
        l.labels.get(k as usize).cloned().unwrap_or_default()
    };
    let mut chart = ChartBuilder::on(root)
        .margin_top(MARGIN + l.title_h + GAP)
        .margin_left(MARGIN)
        .margin_bottom(MARGIN)
        .margin_right(l.right_w)
        .x_label_area_size(l.bottom_h)
        .y_label_area_size(l.left_w)
        .build_cartesian_2d(
            Ticked {
                lo: axis.lo,
                hi: axis.hi,
                ticks: axis.values.clone(),
            },
            Ticked {
                lo: 0.0,
                hi: f64::from(rows),
                ticks: (0..n).map(row_of).collect(),
            },
        )
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(axis.values.len())
        .y_labels(rows as usize)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_label_style(font(TICK_SIZE, MUTED, HPos::Center, VPos::Top))
        .y_label_style(font(LABEL_SIZE, TEXT, HPos::Right, VPos::Center))
        .axis_desc_style(font(LABEL_SIZE, TEXT, HPos::Center, VPos::Top))
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .set_all_tick_mark_size(5)
        .draw()
        .map_err(drawing_error)?;

    // Bars and values are placed in pixels, through the chart's coordinates.
    let value_style = font(TICK_SIZE, TEXT, HPos::Left, VPos::Center);
    let row_h = {
        let (_, top) = chart.backend_coord(&(0.0, f64::from(rows)));
        let (_, bottom) = chart.backend_coord(&(0.0, 0.0));
        f64::from(bottom - top) / f64::from(rows)
    };
    let bar_h = (row_h * BAR_FILL).clamp(1.0, MAX_BAR);
    let (zero_x, _) = chart.backend_coord(&(0.0, 0.0));
    for (k, ((_, v), value)) in c.bars.iter().zip(&l.values).enumerate() {
        let (_, center_y) = chart.backend_coord(&(0.0, row_of(k)));
        let mut value_x = zero_x + VALUE_GAP as i32;
        if v.is_finite() {
            let (end_x, _) = chart.backend_coord(&(v.clamp(axis.lo, axis.hi), 0.0));
            let top = (f64::from(center_y) - bar_h / 2.0).round() as i32;
            let bottom = top + bar_h.round() as i32;
            if end_x != zero_x {
                let (x0, x1) = (zero_x.min(end_x), zero_x.max(end_x));
                root.draw(&Rectangle::new([(x0, top), (x1, bottom)], BAR.filled()))
                    .map_err(drawing_error)?;
            }
            // Negative bars leave the space right of the zero line free.
            if *v > 0.0 {
                value_x = end_x + VALUE_GAP as i32;
            }
        }
        text(root, value, (value_x, center_y), &value_style)?;
    }
    if n == 0 {
        let area = chart.plotting_area().get_pixel_range();
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::chart::render::tests::*;

    fn chart(bars: &[(&str, f64)]) -> BarChart {
        BarChart {
            title: "Top genres".into(),
            x_label: "Average streams (billions)".into(),
            y_label: "Genre".into(),
            bars: bars.iter().map(|(l, v)| (l.to_string(), *v)).collect(),
            width: 1200,
            height: 800,
        }
    }

    fn sample() -> BarChart {
        chart(&[
            ("Jazz/Big Band", 1.936),
            ("Instrumental/Easy Listening", 1.561),
            ("R&B/Hip Hop", 1.465),
            ("Rock", 1.249),
            ("Country/Folk", 1.151),
        ])
    }

    fn bars(svg: &str) -> Vec<&str> {
        let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", BAR.0, BAR.1, BAR.2);
        elements(svg, "rect")
            .into_iter()
            .filter(|r| r.contains(&fill))
            .collect()
    }

    #[test]
    fn png_has_requested_size_and_bars() {
        let (w, h, pixels) = decode(&png(&sample()).unwrap());
        assert_eq!((w, h), (1200, 800));
        assert!(pixels.chunks(3).any(|p| p == [BAR.0, BAR.1, BAR.2]));
    }

    #[test]
    fn svg_has_one_bar_per_value_proportional_and_in_order() {
        let c = sample();
        let doc = svg(&c).unwrap();
        assert!(doc.starts_with("<svg "), "{}", &doc[..100]);
        let bars = bars(&doc);
        assert_eq!(bars.len(), c.bars.len());
        let w0 = num(bars[0], "width");
        for (rect, (_, v)) in bars.iter().zip(&c.bars) {
            let expected = w0 * v / c.bars[0].1;
            assert!((num(rect, "width") - expected).abs() <= 1.5, "{rect}");
        }
        // Drawn top to bottom in the given order.
        let ys: Vec<f64> = bars.iter().map(|r| num(r, "y")).collect();
        assert!(ys.windows(2).all(|p| p[0] < p[1]), "{ys:?}");
        // Labels and values are text, the labels top to bottom too.
        let texts = texts(&doc);
        let pos = |s: &str| texts.iter().position(|t| t == s);
        assert!(pos("Jazz/Big Band").is_some() && pos("R&B/Hip Hop").is_some());
        assert!(pos("1.936").is_some() && pos("1.151").is_some());
        let at = texts_at(&doc);
        let label_y = |s: &str| at.iter().find(|(t, _)| t == s).expect("label").1;
        assert!(label_y("Jazz/Big Band") < label_y("Rock"));
        assert!(label_y("Rock") < label_y("Country/Folk"));
    }

    #[test]
    fn non_finite_values_show_n_a_without_a_bar() {
        let c = chart(&[
            ("up", 2.0),
            ("nan", f64::NAN),
            ("inf", f64::INFINITY),
            ("down", -1.0),
        ]);
        let doc = svg(&c).unwrap();
        assert_eq!(bars(&doc).len(), 2);
        let texts = texts(&doc);
        assert_eq!(texts.iter().filter(|t| *t == "n/a").count(), 2);
        assert!(texts.iter().any(|t| t == "nan") && texts.iter().any(|t| t == "inf"));
        assert!(texts.iter().any(|t| t == "-1.000"));
    }

    #[test]
    fn negative_bars_grow_left_from_zero() {
        let doc = svg(&chart(&[("up", 2.0), ("down", -1.0)])).unwrap();
        let bars = bars(&doc);
        let (up, down) = (bars[0], bars[1]);
        // The up bar starts where the down bar ends: the zero line.
        assert!((num(up, "x") - (num(down, "x") + num(down, "width"))).abs() <= 1.0);
        assert!((num(up, "width") / num(down, "width") - 2.0).abs() < 0.05);
    }

    #[test]
    fn long_labels_are_shortened() {
        let long =
            "Música Popular Brasileira / Tropicália / Bossa Nova / MPB dos anos setenta e oitenta";
        let doc = svg(&chart(&[(long, 1.0), ("Rock", 0.5)])).unwrap();
        let texts = texts(&doc);
        let short = texts
            .iter()
            .find(|t| t.starts_with("Música Popular"))
            .expect("label drawn");
        assert!(short.ends_with('…') && short.len() < long.len(), "{short}");
        assert!(text_width(short, LABEL_SIZE) <= 1200 * 2 / 5);
    }

    #[test]
    fn labels_stay_left_of_bars() {
        // On the pixels: in the longest label's row, every text pixel lies left of every bar pixel.
        let c = sample();
        let doc = svg(&c).unwrap();
        let bar = bars(&doc)[1];
        let (y0, y1) = (
            num(bar, "y") as usize,
            (num(bar, "y") + num(bar, "height")) as usize,
        );
        let bar_left = num(bar, "x") as usize;
        let (w, _, pixels) = decode(&png(&c).unwrap());
        let mut text_right = 0;
        for y in y0..y1 {
            for x in 0..bar_left {
                let i = (y * w as usize + x) * 3;
                if pixels[i] < 0x80 {
                    text_right = text_right.max(x);
                }
            }
        }
        assert!(text_right > 0, "label drawn");
        assert!(text_right + 8 < bar_left, "{text_right} vs {bar_left}");
    }

    #[test]
    fn many_bars_grow_the_height() {
        let bars_in = (0..100).map(|i| (format!("bar {i}"), 1.0)).collect();
        let c = BarChart {
            bars: bars_in,
            ..chart(&[])
        };
        let doc = svg(&c).unwrap();
        let bars = bars(&doc);
        assert_eq!(bars.len(), 100);
        let ys: Vec<f64> = bars.iter().map(|r| num(r, "y")).collect();
        let gaps = ys.windows(2).map(|p| p[1] - p[0]);
        assert!(gaps.fold(f64::MAX, f64::min) >= f64::from(MIN_ROW) - 1.0);
    }

    #[test]
    fn edge_cases_render() {
        let cases = [
            chart(&[]),
            chart(&[("only", 3.0)]),
            chart(&[("a", 0.0), ("b", 0.0)]),
            chart(&[("Música & Café", 1.0), ("日本語", 2.0), ("tab\there", 0.5)]),
            chart(&[("huge", f64::MAX), ("tiny", -f64::MAX)]),
            chart(&[("subnormal", 1e-320)]),
            BarChart {
                width: 0,
                height: 0,
                title: "t".repeat(300),
                ..chart(&[("a", 1.0)])
            },
        ];
        for c in &cases {
            let (w, h, _) = decode(&png(c).unwrap());
            assert!(w >= c.width.min(MAX_SIDE) && h >= c.height.min(MAX_SIDE));
            let doc = svg(c).unwrap();
            let drawable = c
                .bars
                .iter()
                .filter(|b| b.1.is_finite() && b.1 != 0.0)
                .count();
            assert!(bars(&doc).len() <= drawable);
            assert!(doc.trim_end().ends_with("</svg>"));
        }
        assert!(texts(&svg(&chart(&[])).unwrap())
            .iter()
            .any(|t| t == NO_DATA));
    }
}
