//! Horizontal bar charts rendered to SVG text and to PNG bytes.
//!
//! Both outputs come from one `Layout`, so an element sits at the same place in
//! the SVG and in the PNG. Text is measured with the PNG's font8x8 metrics
//! (each glyph trimmed to its ink, times the scale); a 16 px sans-serif is
//! narrower than that for latin text, so space reserved for the PNG also fits
//! the SVG.
//!
//! Decisions worth knowing:
//! - Negative values are supported: the axis always includes 0 and every bar
//!   grows from the zero line, to the right or to the left.
//! - Non-finite values (NaN, ±inf) keep their row and label, show "n/a", and get
//!   no bar; they do not influence the axis. The SVG has one `<rect>` per bar
//!   with a finite value and no other `<rect>`.
//! - The canvas grows past the requested size when needed: taller so each row is
//!   at least `MIN_ROW` px (labels never overlap), wider so the plot keeps
//!   `MIN_PLOT_W` px. Requested sizes are first clamped to 1..=`MAX_SIDE`; growth
//!   for many bars is not capped (about 26 px per bar).
//! - Category labels wider than 40% of the requested width (but at least
//!   192 px) are shortened with "..."; the SVG keeps the full label in a
//!   tooltip. Title and axis titles are shortened the same way if they do not
//!   fit; a title too wide for scale 3 drops to scale 2 first.
//! - The PNG draws basic latin and latin-1 characters from font8x8's legacy
//!   tables (available without its "unicode" feature); any other character
//!   becomes a boxed '?'.
//! - Values are printed with 3 decimals, or as e.g. 4.00e-4 when 3 decimals
//!   would show a nonzero value as 0.000 (or at 1e9 and beyond).

/// A horizontal bar chart: one bar per (label, value), drawn in the given order from the top.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub x_label: String, // axis under the bars, e.g. "Average streams (billions)"
    pub y_label: String, // axis beside the labels, e.g. "Genre" (drawn vertically)
    pub bars: Vec<(String, f64)>,
    pub width: u32,  // pixels, e.g. 1200
    pub height: u32, // pixels, e.g. 800 (grows if there are many bars so labels never overlap)
}

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [0xFF, 0xFF, 0xFF];
const BAR: Rgb = [0x46, 0x82, 0xB4]; // steel blue
const TEXT: Rgb = [0x33, 0x33, 0x33];
const MUTED: Rgb = [0x66, 0x66, 0x66];
const AXIS: Rgb = [0x88, 0x88, 0x88];
const GRID: Rgb = [0xDD, 0xDD, 0xDD];

const GLYPH: u32 = 8;
const TEXT_SCALE: u32 = 2;
const TITLE_SCALE: u32 = 3;

const MARGIN: f64 = 28.0;
const GAP: f64 = 12.0;
const TICK_LEN: f64 = 6.0;
/// Space between the end of a bar and its value.
const VALUE_GAP: f64 = 8.0;
/// One 16 px label plus breathing room; rows never get thinner than this.
const MIN_ROW: f64 = 26.0;
/// Share of a row filled by its bar; the rest separates neighbouring bars.
const BAR_FILL: f64 = 0.72;
/// Keeps a chart with one or two bars from turning into slabs.
const MAX_BAR: f64 = 56.0;
const MIN_PLOT_W: f64 = 240.0;
const MIN_PLOT_H: f64 = 120.0;
/// Bounds the framebuffer a caller-supplied size can allocate.
const MAX_SIDE: u32 = 8192;
const TARGET_TICKS: f64 = 5.0;

/// Renders the chart as a standalone SVG document.
pub fn svg(chart: &BarChart) -> String {
    let l = Layout::new(chart);
    let (w, h) = (l.width, l.height);
    let mut out = vec![
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
        ),
        // A path, not a rect, so that every <rect> in the document is a bar.
        format!(r#"<path d="M0 0H{w}V{h}H0Z" fill="{}"/>"#, hex(BACKGROUND)),
    ];

    out.push(format!(
        r#"<g stroke="{}" stroke-width="1" shape-rendering="crispEdges">"#,
        hex(GRID)
    ));
    for (x, _) in &l.ticks {
        out.push(vline(crisp(*x), l.plot.top, l.plot.bottom));
    }
    out.push("</g>".into());

    for row in &l.rows {
        if let Some(bar) = &row.bar {
            out.push(format!(
                r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                num(bar.x),
                num(bar.y),
                num(bar.w),
                num(bar.h),
                hex(BAR),
                xml_escape(&row.full_label),
                xml_escape(&row.value),
            ));
        }
    }

    out.push(format!(
        r#"<g stroke="{}" stroke-width="1" shape-rendering="crispEdges">"#,
        hex(AXIS)
    ));
    let axis_y = crisp(l.plot.bottom);
    out.push(format!(
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
        num(l.plot.left),
        num(axis_y),
        num(l.plot.right),
        num(axis_y)
    ));
    out.push(vline(crisp(l.zero_x), l.plot.top, l.plot.bottom));
    for (x, _) in &l.ticks {
        out.push(vline(crisp(*x), l.plot.bottom, l.plot.bottom + TICK_LEN));
    }
    out.push("</g>".into());

    let mut text = |x: f64, cy: f64, size: u32, anchor: &str, color: Rgb, extra: &str, s: &str| {
        // Baseline offset that centres a sans-serif line on cy; more portable
        // than dominant-baseline, which some renderers ignore.
        let y = cy + 0.35 * f64::from(size);
        out.push(format!(
            r#"<text x="{}" y="{}" font-size="{size}" text-anchor="{anchor}" fill="{}"{extra}>{}</text>"#,
            num(x),
            num(y),
            hex(color),
            xml_escape(s)
        ));
    };

    text(
        f64::from(w) / 2.0,
        l.title_y,
        GLYPH * l.title_scale,
        "middle",
        TEXT,
        r#" font-weight="bold""#,
        &l.title,
    );
    for (x, label) in &l.ticks {
        text(*x, l.tick_label_y, 14, "middle", MUTED, "", label);
    }
    for row in &l.rows {
        text(l.label_right, row.center_y, 16, "end", TEXT, "", &row.label);
        text(row.value_x, row.center_y, 14, "start", TEXT, "", &row.value);
    }
    if l.rows.is_empty() {
        let (cx, cy) = (l.plot.center_x(), l.plot.center_y());
        text(cx, cy, 16, "middle", MUTED, "", NO_DATA);
    }
    text(l.x_label_x, l.x_label_y, 16, "middle", TEXT, "", &l.x_label);
    let cy = l.plot.center_y();
    let rotate = format!(
        r#" transform="rotate(-90 {} {})""#,
        num(l.y_label_x),
        num(cy)
    );
    text(l.y_label_x, cy, 16, "middle", TEXT, &rotate, &l.y_label);

    out.push("</svg>\n".into());
    out.join("\n")
}

/// Renders the chart as an 8-bit RGB PNG.
pub fn png(chart: &BarChart) -> Vec<u8> {
    let l = Layout::new(chart);
    let mut c = Canvas::new(l.width, l.height);
    let (top, bottom) = (px(l.plot.top), px(l.plot.bottom));

    for (x, _) in &l.ticks {
        c.fill_rect(px(*x), top, 1, bottom - top, GRID);
    }
    for row in &l.rows {
        if let Some(b) = &row.bar {
            let (x0, y0) = (px(b.x), px(b.y));
            c.fill_rect(x0, y0, px(b.x + b.w) - x0, px(b.y + b.h) - y0, BAR);
        }
    }
    let (left, right) = (px(l.plot.left), px(l.plot.right));
    c.fill_rect(left, bottom, right - left + 1, 1, AXIS);
    c.fill_rect(px(l.zero_x), top, 1, bottom - top, AXIS);

    let s = TEXT_SCALE;
    let half = f64::from(GLYPH * s) / 2.0;
    for (x, label) in &l.ticks {
        c.fill_rect(px(*x), bottom, 1, px(TICK_LEN), AXIS);
        let x = x - text_width(label, s) / 2.0;
        c.draw_text(px(x), px(l.tick_label_y - half), label, s, MUTED);
    }
    for row in &l.rows {
        let y = px(row.center_y - half);
        let x = l.label_right - text_width(&row.label, s);
        c.draw_text(px(x), y, &row.label, s, TEXT);
        c.draw_text(px(row.value_x), y, &row.value, s, TEXT);
    }
    if l.rows.is_empty() {
        let x = l.plot.center_x() - text_width(NO_DATA, s) / 2.0;
        c.draw_text(px(x), px(l.plot.center_y() - half), NO_DATA, s, MUTED);
    }

    let ts = l.title_scale;
    let x = f64::from(l.width) / 2.0 - text_width(&l.title, ts) / 2.0;
    let y = l.title_y - f64::from(GLYPH * ts) / 2.0;
    c.draw_text(px(x), px(y), &l.title, ts, TEXT);

    let x = l.x_label_x - text_width(&l.x_label, s) / 2.0;
    c.draw_text(px(x), px(l.x_label_y - half), &l.x_label, s, TEXT);

    let bottom_of_text = l.plot.center_y() + text_width(&l.y_label, s) / 2.0;
    c.draw_text_vertical(
        px(l.y_label_x - half),
        px(bottom_of_text),
        &l.y_label,
        s,
        TEXT,
    );

    c.encode()
}

const NO_DATA: &str = "No data";

/// Where everything goes, in pixels, shared by both renderers.
struct Layout {
    width: u32,
    height: u32,
    plot: Plot,
    zero_x: f64,
    /// Category labels are right-aligned against this x.
    label_right: f64,
    title: String,
    title_scale: u32,
    title_y: f64,
    x_label: String,
    /// Centre of the x-axis title: under the plot, unless that would push a
    /// long title off the canvas.
    x_label_x: f64,
    x_label_y: f64,
    y_label: String,
    y_label_x: f64,
    ticks: Vec<(f64, String)>,
    tick_label_y: f64,
    rows: Vec<Row>,
}

struct Plot {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Plot {
    fn center_x(&self) -> f64 {
        (self.left + self.right) / 2.0
    }
    fn center_y(&self) -> f64 {
        (self.top + self.bottom) / 2.0
    }
}

struct Row {
    label: String,
    full_label: String,
    value: String,
    center_y: f64,
    bar: Option<Rect>,
    value_x: f64,
}

struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Layout {
    fn new(chart: &BarChart) -> Self {
        let s = TEXT_SCALE;
        let line = f64::from(GLYPH * s);
        let req_w = f64::from(chart.width.clamp(1, MAX_SIDE));
        let req_h = f64::from(chart.height.clamp(1, MAX_SIDE));

        let finite = chart.bars.iter().map(|b| b.1).filter(|v| v.is_finite());
        let (min, max) = finite.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let axis = Axis::new(min, max);
        let tick_labels: Vec<String> = axis.values.iter().map(|&v| axis.label(v)).collect();

        let label_cap = (req_w * 0.4).max(f64::from(GLYPH * s * 12));
        let labels: Vec<String> = chart
            .bars
            .iter()
            .map(|(label, _)| fit(label, label_cap, s))
            .collect();
        let values: Vec<String> = chart.bars.iter().map(|b| format_value(b.1)).collect();
        let widest = |texts: &[String]| texts.iter().map(|t| text_width(t, s)).fold(0.0, f64::max);
        let label_w = widest(&labels);
        let value_w = widest(&values);
        let first_tick_w = tick_labels.first().map_or(0.0, |t| text_width(t, s));
        let last_tick_w = tick_labels.last().map_or(0.0, |t| text_width(t, s));

        let y_label_x = MARGIN + line / 2.0;
        let y_label_w = if chart.y_label.is_empty() {
            0.0
        } else {
            line + GAP
        };
        let label_right = MARGIN + y_label_w + label_w;
        let left = (label_right + GAP).max(MARGIN + first_tick_w / 2.0);
        let right_reserve = (value_w + VALUE_GAP).max(last_tick_w / 2.0) + MARGIN;
        let width = req_w.max(left + MIN_PLOT_W + right_reserve).ceil();

        let title_scale = if text_width(&chart.title, TITLE_SCALE) <= width - 2.0 * MARGIN {
            TITLE_SCALE
        } else {
            s
        };
        let title = fit(&chart.title, width - 2.0 * MARGIN, title_scale);
        let title_h = if title.is_empty() {
            0.0
        } else {
            f64::from(GLYPH * title_scale) + 2.0 * GAP
        };
        let top = MARGIN + title_h;
        let tick_label_y = TICK_LEN + GAP / 2.0 + line / 2.0;
        let x_label_h = if chart.x_label.is_empty() {
            0.0
        } else {
            1.5 * GAP + line
        };
        let bottom_reserve = tick_label_y + line / 2.0 + x_label_h + MARGIN;
        let n = chart.bars.len();
        let plot_h = (n as f64 * MIN_ROW).max(MIN_PLOT_H);
        let height = req_h.max(top + plot_h + bottom_reserve).ceil();

        let plot = Plot {
            left,
            right: width - right_reserve,
            top,
            bottom: height - bottom_reserve,
        };
        let span = axis.hi - axis.lo;
        let to_x = |v: f64| {
            plot.left + (v.clamp(axis.lo, axis.hi) - axis.lo) / span * (plot.right - plot.left)
        };
        let zero_x = to_x(0.0);
        let ticks = axis
            .values
            .iter()
            .map(|&v| to_x(v))
            .zip(tick_labels)
            .collect();

        let row_h = (plot.bottom - plot.top) / n.max(1) as f64;
        let bar_h = (row_h * BAR_FILL).min(MAX_BAR);
        let rows = chart
            .bars
            .iter()
            .zip(labels)
            .zip(values)
            .enumerate()
            .map(|(i, (((full, v), label), value))| {
                let center_y = plot.top + (i as f64 + 0.5) * row_h;
                let bar = v.is_finite().then(|| {
                    let end = to_x(*v);
                    Rect {
                        x: zero_x.min(end),
                        y: center_y - bar_h / 2.0,
                        w: (end - zero_x).abs(),
                        h: bar_h,
                    }
                });
                // Negative bars leave the space right of the zero line free.
                let value_x = match &bar {
                    Some(b) if *v > 0.0 => b.x + b.w + VALUE_GAP,
                    _ => zero_x + VALUE_GAP,
                };
                Row {
                    label,
                    full_label: full.clone(),
                    value,
                    center_y,
                    bar,
                    value_x,
                }
            })
            .collect();

        let x_label = fit(&chart.x_label, width - 2.0 * MARGIN, s);
        let half_x_label = text_width(&x_label, s) / 2.0;
        let x_label_x = plot
            .center_x()
            .min(width - MARGIN - half_x_label)
            .max(MARGIN + half_x_label);

        Layout {
            width: width as u32,
            height: height as u32,
            zero_x,
            label_right,
            title,
            title_scale,
            title_y: MARGIN + f64::from(GLYPH * title_scale) / 2.0,
            x_label,
            x_label_x,
            x_label_y: height - MARGIN - line / 2.0,
            y_label: fit(&chart.y_label, plot.bottom - plot.top, s),
            y_label_x,
            ticks,
            tick_label_y: plot.bottom + tick_label_y,
            rows,
            plot,
        }
    }
}

/// An axis domain padded out to whole ticks of a 1-2-5 step, so every tick
/// label is a round number.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    /// Decimal digits a tick label needs, derived from the step's exponent
    /// rather than from float formatting, which would print 0.30000000000000004.
    decimals: usize,
    scientific: bool,
    values: Vec<f64>,
}

impl Axis {
    /// The domain always includes 0, the baseline every bar grows from.
    fn new(min: f64, max: f64) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let span = hi - lo;
        // All-zero data and spans that overflow get a plain 0..1 axis.
        if !(span.is_finite() && span > 0.0) {
            return Axis::new(0.0, 1.0);
        }
        let raw = span / TARGET_TICKS;
        let mut exp = raw.log10().floor() as i32;
        let mag = 10f64.powi(exp);
        let mantissa = match raw / mag {
            r if r <= 1.0 => 1.0,
            r if r <= 2.0 => 2.0,
            r if r <= 5.0 => 5.0,
            _ => {
                exp += 1;
                1.0
            }
        };
        let step = mantissa * 10f64.powi(exp);
        if !(step.is_finite() && step > 0.0) {
            return Axis::new(0.0, 1.0);
        }
        // Bounded by span/step, i.e. about TARGET_TICKS.
        let first = (lo / step).floor() as i64;
        let last = (hi / step).ceil() as i64;
        let values: Vec<f64> = (first..=last).map(|i| i as f64 * step).collect();
        let top = values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        Axis {
            lo: first as f64 * step,
            hi: last as f64 * step,
            decimals: (-exp).max(0) as usize,
            scientific: !(-6..9).contains(&exp) || top >= 1e9,
            values,
        }
    }

    fn label(&self, v: f64) -> String {
        if v == 0.0 {
            "0".into()
        } else if self.scientific {
            // Ticks are k·step with k·mantissa below ~100: two significant
            // digits are exact and hide float noise like 3.0000000000000004e-7.
            format!("{v:.1e}")
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// Three decimals as asked for; scientific only where three decimals would
/// print a nonzero value as 0.000 or run to dozens of digits.
fn format_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if v == 0.0 {
        "0.000".into() // also avoids "-0.000"
    } else if !(1e-3..1e9).contains(&a) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// Width in px of `text` as the PNG draws it, without the spacing after
/// the last glyph.
fn text_width(text: &str, scale: u32) -> f64 {
    let columns: f64 = text.chars().map(|c| f64::from(advance(c))).sum();
    (columns - 1.0).max(0.0) * f64::from(scale)
}

/// Shortens `text` with "..." so that it takes at most `max_width` px.
fn fit(text: &str, max_width: f64, scale: u32) -> String {
    if text_width(text, scale) <= max_width {
        return text.to_string();
    }
    let scale = f64::from(scale);
    let mut budget = max_width - text_width("...", scale as u32) - scale;
    if budget < 0.0 {
        return String::new();
    }
    let mut short = String::new();
    for c in text.chars() {
        budget -= f64::from(advance(c)) * scale;
        if budget < 0.0 {
            break;
        }
        short.push(c);
    }
    short.truncate(short.trim_end().len());
    short.push_str("...");
    short
}

fn px(v: f64) -> i64 {
    v.round() as i64
}

/// Puts a 1 px line on a pixel centre so it is not smeared over two pixels.
fn crisp(v: f64) -> f64 {
    v.round() + 0.5
}

fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn vline(x: f64, y1: f64, y2: f64) -> String {
    format!(
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
        num(x),
        num(y1),
        num(x),
        num(y2)
    )
}

fn hex([r, g, b]: Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Escapes markup and replaces characters XML 1.0 forbids, so any label
/// yields a well-formed document.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A boxed '?' for characters font8x8 has no glyph for (rows top to bottom,
/// least significant bit leftmost, as in font8x8).
const MISSING_GLYPH: [u8; 8] = [0x7F, 0x5D, 0x51, 0x49, 0x41, 0x49, 0x7F, 0x00];

/// Advance of a blank glyph, in font columns: about half a letter, like the
/// space of a proportional font.
const SPACE_COLUMNS: u32 = 4;

fn glyph(c: char) -> [u8; 8] {
    use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
    match c as u32 {
        code @ 0x20..=0x7E => BASIC_LEGACY[code as usize],
        code @ 0xA0..=0xFF => LATIN_LEGACY[(code - 0xA0) as usize],
        _ if c.is_whitespace() => [0; 8],
        _ => MISSING_GLYPH,
    }
}

/// First inked column and advance (ink plus one blank column), in font
/// columns. Trimming each 8-wide cell to its ink makes the fixed-cell font
/// read like a proportional one, so "il" is not as wide as "MW".
fn metrics(bits: &[u8; 8]) -> (u32, u32) {
    let ink = bits.iter().fold(0, |acc, row| acc | row);
    if ink == 0 {
        return (0, SPACE_COLUMNS);
    }
    let first = ink.trailing_zeros();
    let last = 7 - ink.leading_zeros();
    (first, last - first + 2)
}

fn advance(c: char) -> u32 {
    metrics(&glyph(c)).1
}

/// An RGB framebuffer; every drawing call clips, so callers may draw partly
/// (or wholly) off-canvas.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let pixels = BACKGROUND.repeat(width as usize * height as usize);
        Canvas {
            width,
            height,
            pixels,
        }
    }

    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        let x0 = x.clamp(0, i64::from(self.width)) as usize;
        let x1 = (x.saturating_add(w)).clamp(0, i64::from(self.width)) as usize;
        let y0 = y.clamp(0, i64::from(self.height)) as usize;
        let y1 = (y.saturating_add(h)).clamp(0, i64::from(self.height)) as usize;
        let stride = self.width as usize * 3;
        for row in y0..y1 {
            let line = &mut self.pixels[row * stride..][x0 * 3..x1 * 3];
            for px in line.chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each glyph pixel
    /// becoming a `scale`×`scale` square.
    fn draw_text(&mut self, x: i64, y: i64, text: &str, scale: u32, color: Rgb) {
        let s = i64::from(scale);
        let mut pen = x;
        for c in text.chars() {
            let bits = glyph(c);
            let (first, advance) = metrics(&bits);
            for (row, line) in (0..).zip(bits) {
                for col in 0..8 {
                    if (line >> col) & 1 == 1 {
                        let gx = pen + (col - i64::from(first)) * s;
                        self.fill_rect(gx, y + row * s, s, s, color);
                    }
                }
            }
            pen += i64::from(advance) * s;
        }
    }

    /// Draws `text` rotated 90° counter-clockwise, reading bottom to top from
    /// (x, y_bottom), the way a y-axis title is read.
    fn draw_text_vertical(&mut self, x: i64, y_bottom: i64, text: &str, scale: u32, color: Rgb) {
        let s = i64::from(scale);
        let mut pen = y_bottom;
        for c in text.chars() {
            let bits = glyph(c);
            let (first, advance) = metrics(&bits);
            for (row, line) in (0..).zip(bits) {
                for col in 0..8 {
                    if (line >> col) & 1 == 1 {
                        // Glyph columns run up the canvas, glyph rows to the right.
                        let gy = pen - (col - i64::from(first) + 1) * s;
                        self.fill_rect(x + row * s, gy, s, s, color);
                    }
                }
            }
            pen -= i64::from(advance) * s;
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut w| {
                w.write_image_data(&self.pixels)?;
                w.finish()
            })
            // Unreachable: writing to a Vec cannot fail, Layout never yields a
            // zero side, and the buffer always matches width × height × 3.
            .expect("PNG encoding into memory");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Decodes to (width, height, RGB pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("valid PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn attr(element: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let start = element.find(&key).expect("attribute") + key.len();
        let end = start + element[start..].find('"').expect("closing quote");
        element[start..end].parse().expect("number")
    }

    fn rects(svg: &str) -> Vec<&str> {
        svg.split("<rect").skip(1).collect()
    }

    #[test]
    fn png_has_requested_size() {
        let (w, h, pixels) = decode(&png(&sample()));
        assert_eq!((w, h), (1200, 800));
        assert_eq!(pixels.len(), 1200 * 800 * 3);
        assert!(pixels.chunks(3).any(|p| p == BAR));
    }

    #[test]
    fn svg_has_one_rect_per_bar_proportional_to_values() {
        let c = sample();
        let doc = svg(&c);
        assert!(doc.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"800\" viewBox=\"0 0 1200 800\""
        ));
        let rects = rects(&doc);
        assert_eq!(rects.len(), c.bars.len());
        let w0 = attr(rects[0], "width");
        for (rect, (_, v)) in rects.iter().zip(&c.bars) {
            let expected = w0 * v / c.bars[0].1;
            assert!((attr(rect, "width") - expected).abs() < 0.05, "{rect}");
        }
        // Drawn top to bottom in the given order.
        let ys: Vec<f64> = rects.iter().map(|r| attr(r, "y")).collect();
        assert!(ys.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn svg_escapes_text() {
        let mut c = sample();
        c.title = r#"<"Quotes" & 'apostrophes'>"#.into();
        let doc = svg(&c);
        assert!(doc.contains(">R&amp;B/Hip Hop</text>"));
        assert!(!doc.contains("R&B"));
        assert!(doc.contains("&lt;&quot;Quotes&quot; &amp; &apos;apostrophes&apos;&gt;"));
        assert_eq!(xml_escape("a\u{0}b\u{FFFF}"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn svg_rotates_y_label() {
        let doc = svg(&sample());
        let line = doc
            .lines()
            .find(|l| l.ends_with(">Genre</text>"))
            .expect("y label");
        assert!(line.contains("transform=\"rotate(-90 "));
    }

    #[test]
    fn labels_stay_left_of_bars() {
        let c = sample();
        let l = Layout::new(&c);
        let longest = text_width("Instrumental/Easy Listening", TEXT_SCALE);
        assert!(l.label_right - longest > l.y_label_x + 8.0);
        assert!(l.plot.left >= l.label_right + GAP);

        // The same, checked on the pixels: in the longest label's row, every
        // text pixel lies left of every bar pixel.
        let (w, _, pixels) = decode(&png(&c));
        let row = &l.rows[1];
        let (y0, y1) = (px(row.center_y) - 8, px(row.center_y) + 8);
        let mut text_right = 0;
        let mut bar_left = i64::MAX;
        for y in y0..y1 {
            for x in 0..i64::from(w) {
                let i = (y as usize * w as usize + x as usize) * 3;
                let p = &pixels[i..i + 3];
                if p == TEXT && x < px(l.zero_x) {
                    text_right = text_right.max(x);
                } else if p == BAR {
                    bar_left = bar_left.min(x);
                }
            }
        }
        assert!(text_right > 0, "label drawn");
        assert!(text_right < bar_left - 8, "{text_right} vs {bar_left}");
    }

    #[test]
    fn ticks_are_nice_numbers() {
        let axis = Axis::new(0.0, 1.936);
        let labels: Vec<String> = axis.values.iter().map(|&v| axis.label(v)).collect();
        assert_eq!(labels, ["0", "0.5", "1.0", "1.5", "2.0"]);

        for max in [0.003, 0.7, 1.0, 9.9, 42.0, 137.5, 2.5e6, 7e12] {
            let axis = Axis::new(0.0, max);
            let step = axis.values[1] - axis.values[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            let nice = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .any(|m| (mantissa - m).abs() < 1e-9);
            assert!(nice, "step {step} for {max}");
            assert!(axis.hi >= max && axis.lo == 0.0);
            assert!(
                (4..=11).contains(&axis.values.len()),
                "{max}: {:?}",
                axis.values
            );
        }
        for max in [3e-7, 2.5e10] {
            let axis = Axis::new(0.0, max);
            for v in &axis.values {
                let label = axis.label(*v);
                assert!(label.len() <= 7, "{label}");
                assert!((label.parse::<f64>().unwrap() - v).abs() <= v.abs() * 1e-9);
            }
        }
        let axis = Axis::new(-3.2, 7.9);
        assert!(axis.lo <= -3.2 && axis.hi >= 7.9 && axis.values.contains(&0.0));
    }

    #[test]
    fn values_use_three_decimals() {
        assert_eq!(format_value(1.9364), "1.936");
        assert_eq!(format_value(-0.0), "0.000");
        assert_eq!(format_value(f64::NAN), "n/a");
        assert_eq!(format_value(1e-5), "1.00e-5");
    }

    #[test]
    fn empty_chart_renders() {
        let c = chart(&[]);
        let (w, h, _) = decode(&png(&c));
        assert_eq!((w, h), (1200, 800));
        let doc = svg(&c);
        assert!(rects(&doc).is_empty());
        assert!(doc.contains(NO_DATA));
        assert!(doc.ends_with("</svg>\n"));
    }

    #[test]
    fn edge_cases_render_without_panicking() {
        let many: Vec<(String, f64)> = (0..100)
            .map(|i| (format!("bar {i}"), f64::from(i)))
            .collect();
        let cases = [
            chart(&[("only", 3.0)]),
            chart(&[("a", 0.0), ("b", 0.0)]),
            chart(&[
                ("up", 2.0),
                ("down", -1.5),
                ("nan", f64::NAN),
                ("inf", f64::INFINITY),
            ]),
            chart(&[("Música & Café", 1.0), ("日本語", 2.0), ("tab\there", 0.5)]),
            chart(&[("huge", f64::MAX), ("tiny", -f64::MAX)]),
            chart(&[("subnormal", 1e-320)]),
            chart(&[(&"x".repeat(500), 1.0)]),
            BarChart {
                width: 0,
                height: 0,
                title: "t".repeat(300),
                ..chart(&[("a", 1.0)])
            },
            BarChart {
                bars: many,
                ..chart(&[])
            },
        ];
        for c in &cases {
            let (w, h, _) = decode(&png(c));
            assert!(w >= c.width.min(MAX_SIDE) && h >= c.height.min(MAX_SIDE));
            let doc = svg(c);
            let finite = c.bars.iter().filter(|b| b.1.is_finite()).count();
            assert_eq!(rects(&doc).len(), finite);
        }
    }

    #[test]
    fn many_bars_grow_the_height() {
        let bars = (0..100).map(|i| (format!("bar {i}"), 1.0)).collect();
        let c = BarChart { bars, ..chart(&[]) };
        let l = Layout::new(&c);
        assert!(l.height > 800);
        let gaps = l.rows.windows(2).map(|r| r[1].center_y - r[0].center_y);
        assert!(gaps.fold(f64::MAX, f64::min) >= MIN_ROW - 1e-9);
    }

    #[test]
    fn negative_bars_grow_left_from_zero() {
        let l = Layout::new(&chart(&[("up", 2.0), ("down", -1.0)]));
        let (up, down) = (
            l.rows[0].bar.as_ref().unwrap(),
            l.rows[1].bar.as_ref().unwrap(),
        );
        assert!((up.x - l.zero_x).abs() < 1e-9);
        assert!((down.x + down.w - l.zero_x).abs() < 1e-9);
        assert!(down.x >= l.plot.left && up.x + up.w <= l.plot.right);
        assert!((up.w / down.w - 2.0).abs() < 1e-9);
    }

    #[test]
    fn vertical_text_is_rotated_counter_clockwise() {
        let mut horizontal = Canvas::new(8, 8);
        horizontal.draw_text(0, 0, "L", 1, TEXT);
        let mut vertical = Canvas::new(8, 8);
        vertical.draw_text_vertical(0, 8, "L", 1, TEXT);
        let at = |c: &Canvas, x: usize, y: usize| c.pixels[(y * 8 + x) * 3] == TEXT[0];
        for y in 0..8 {
            for x in 0..8 {
                // Rotating 90° counter-clockwise sends (x, y) to (y, 7 - x).
                assert_eq!(at(&horizontal, x, y), at(&vertical, y, 7 - x));
            }
        }
    }

    #[test]
    fn missing_glyphs_draw_a_box() {
        assert_eq!(glyph('日'), MISSING_GLYPH);
        assert_ne!(glyph('é'), MISSING_GLYPH);
        assert_eq!(glyph('A'), font8x8::legacy::BASIC_LEGACY[65]);
    }
}
