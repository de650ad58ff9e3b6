//! What both kinds of chart share: the embedded font, text measuring and shortening, number and time
//! axes, colours, and the two outputs (plotters' SVG backend, and its bitmap backend encoded as PNG).
//!
//! Decisions worth knowing:
//! - Text is DejaVu Sans, embedded in the binary and registered with plotters' `ab_glyph` font
//!   support, so a PNG is the same on every machine. The SVG keeps its text as `<text>` (searchable,
//!   selectable) with `font-family="DejaVu Sans, sans-serif"`: a viewer without DejaVu Sans draws it in
//!   its own sans-serif. Space is measured with the embedded font, which is wider than most sans-serif
//!   fonts, so the SVG's text fits too.
//! - DejaVu Sans covers Latin, Greek, Cyrillic, Arabic, Hebrew and more, but not Chinese, Japanese or
//!   Korean: in the PNG those characters are drawn as the font's empty box (a CJK font would add 15 MB
//!   to the binary). The SVG shows them wherever the viewer has a font for them.
//! - Canvas sizes are clamped to `MAX_SIDE`, so a chart never allocates more than 8192² pixels.

use ab_glyph::{point, Font, FontRef, Glyph, PxScale, ScaleFont};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use std::sync::{Once, OnceLock};

/// The font family as plotters knows it, and as the SVG names it (a CSS font list).
pub(super) const FAMILY: &str = "DejaVu Sans, sans-serif";
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

pub(super) const BACKGROUND: RGBColor = RGBColor(0xFF, 0xFF, 0xFF);
pub(super) const TEXT: RGBColor = RGBColor(0x33, 0x33, 0x33);
pub(super) const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
pub(super) const AXIS: RGBColor = RGBColor(0x88, 0x88, 0x88);
pub(super) const GRID: RGBColor = RGBColor(0xE0, 0xE0, 0xE0);

/// Font sizes in plotters' unit: the font's full height (ascent plus descent) in pixels.
pub(super) const TITLE_SIZE: f64 = 26.0;
pub(super) const LABEL_SIZE: f64 = 18.0;
pub(super) const TICK_SIZE: f64 = 16.0;

pub(super) const MARGIN: u32 = 24;
pub(super) const GAP: u32 = 10;
/// Bounds the framebuffer a caller-supplied size can allocate.
pub(super) const MAX_SIDE: u32 = 8192;

/// Series colours (Tableau 10): distinct from each other, and readable on white.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

/// Registers the embedded font with plotters, once per process.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Unreachable failure: the bytes are a font file compiled into the binary, and a unit test
        // draws with it.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded DejaVu Sans is not a valid font");
        }
    });
}

/// The chart font at `size`, in `color`, anchored at `h`/`v`.
pub(super) fn font(size: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    register_font();
    TextStyle {
        font: (FAMILY, size).into_font(),
        color: color.to_backend_color(),
        pos: Pos::new(h, v),
    }
}

/// Width in pixels of `text` drawn at `size`, as both outputs draw it.
pub(super) fn text_width(text: &str, size: f64) -> u32 {
    layout(text, em(size), 0.0, 0.0).1.ceil() as u32
}

/// The font size in pixels (the em) for plotters' `size`, as plotters' SVG backend writes it
/// (`font-size = size / 1.24`); the PNG draws the same em.
fn em(size: f64) -> f32 {
    (size / 1.24) as f32
}

fn face() -> &'static FontRef<'static> {
    static FACE: OnceLock<FontRef<'static>> = OnceLock::new();
    // Unreachable failure: the bytes are a font file compiled into the binary, and unit tests draw
    // with it.
    FACE.get_or_init(|| FontRef::try_from_slice(FONT).expect("the embedded DejaVu Sans is a font"))
}

/// `text`'s glyphs at `em` pixels, the first at (`x`, baseline `y`), kerned, at sub-pixel positions;
/// and the advance width of the whole.
fn layout(text: &str, em: f32, x: f32, y: f32) -> (Vec<Glyph>, f32) {
    let font = face();
    let units = font.units_per_em().unwrap_or(2048.0);
    let scale = PxScale::from(em * font.height_unscaled() / units);
    let scaled = font.as_scaled(scale);
    let mut glyphs = Vec::with_capacity(text.len());
    let mut pen = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(x + pen, y)));
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    (glyphs, pen)
}

/// DejaVu Sans's x-height (1120 of 2048 units per em): an SVG viewer centres text on half of it.
const X_HEIGHT: f32 = 0.547;

/// plotters' bitmap backend, drawing text with `ab_glyph` directly: plotters' own `ab_glyph` text
/// drawing puts each glyph on a whole pixel and ignores its side bearing, which spaces letters
/// unevenly ("st reams"). Text is placed as the SVG backend asks a viewer to place it (baseline
/// 0.76 em under a top anchor, half an x-height under a centre anchor), so both outputs agree.
pub(super) struct PngBackend<'a>(BitMapBackend<'a>);

impl DrawingBackend for PngBackend<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let em = em(style.size());
        Ok((layout(text, em, 0.0, 0.0).1.ceil() as u32, em.ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let em = em(style.size());
        let width = layout(text, em, 0.0, 0.0).1;
        let x = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let baseline = match style.anchor().v_pos {
            VPos::Top => 0.76 * em,
            VPos::Center => X_HEIGHT * em / 2.0,
            VPos::Bottom => -X_HEIGHT * em / 2.0,
        };
        let turn = style.transform();
        let font = face();
        for glyph in layout(text, em, x, baseline).0 {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            let mut pixels = Vec::new();
            outline.draw(|gx, gy, coverage| pixels.push((gx, gy, coverage)));
            for (gx, gy, coverage) in pixels {
                if coverage <= 0.0 {
                    continue;
                }
                let (dx, dy) = turn.transform(
                    bounds.min.x as i32 + gx as i32,
                    bounds.min.y as i32 + gy as i32,
                );
                let ink = BackendColor {
                    alpha: color.alpha * f64::from(coverage.min(1.0)),
                    rgb: color.rgb,
                };
                self.0.draw_pixel((pos.0 + dx, pos.1 + dy), ink)?;
            }
        }
        Ok(())
    }
}

/// `text`, shortened with an ellipsis ("…") so that it takes at most `max` pixels at `size`.
pub(super) fn fit(text: &str, max: u32, size: f64) -> String {
    // Tabs and line breaks would be drawn as boxes in the PNG.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text_width(&text, size) <= max {
        return text;
    }
    let mut chars: Vec<char> = text.chars().collect();
    // Binary search for the longest prefix that fits with its ellipsis: labels can be long.
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate: String = chars[..mid]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string()
            + "…";
        if text_width(&candidate, size) <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo == 0 {
        return String::new();
    }
    chars.truncate(lo);
    let short: String = chars.into_iter().collect();
    short.trim_end().to_string() + "…"
}

/// Three decimals; scientific only where three decimals would print a nonzero value as 0.000 or run
/// to dozens of digits. Non-finite values are "n/a", as in the console sink.
pub(super) fn format_value(v: f64) -> String {
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

/// A number axis padded out to whole ticks of a 1-2-5 step, so every tick label is a round number.
#[derive(Debug)]
pub(super) struct Axis {
    pub lo: f64,
    pub hi: f64,
    /// Decimal digits a tick label needs, derived from the step's exponent rather than from float
    /// formatting, which would print 0.30000000000000004.
    decimals: usize,
    scientific: bool,
    pub values: Vec<f64>,
}

const TARGET_TICKS: f64 = 5.0;

impl Axis {
    /// With `zero`, the domain includes 0 (the baseline bars grow from).
    pub fn new(min: f64, max: f64, zero: bool) -> Self {
        let (lo, hi) = if zero {
            (min.min(0.0), max.max(0.0))
        } else {
            (min, max)
        };
        let span = hi - lo;
        if !span.is_finite() || span < 0.0 {
            return Axis::new(0.0, 1.0, true);
        }
        if span == 0.0 {
            // A single value: an axis around it (or 0..1 for 0).
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
            return Axis::new(lo - pad, hi + pad, zero);
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
            return Axis::new(0.0, 1.0, true);
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

    pub fn label(&self, v: f64) -> String {
        if v == 0.0 {
            "0".into()
        } else if self.scientific {
            // Ticks are k·step with k·mantissa below ~100: two significant digits are exact and hide
            // float noise like 3.0000000000000004e-7.
            format!("{v:.1e}")
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A time axis in UTC: ticks at round times (every 5 minutes, every 6 hours, every day...), labelled
/// with what changes between them; the date goes into the axis title when all ticks share it.
#[derive(Debug)]
pub(super) struct TimeAxis {
    pub lo: i64,
    pub hi: i64,
    pub values: Vec<i64>,
    step: i64,
    /// The one date every tick falls on, if there is one.
    pub date: Option<String>,
}

impl TimeAxis {
    /// An axis from `min` to `max` (milliseconds since the epoch) with at most `max_ticks` ticks.
    pub fn new(min: i64, max: i64, max_ticks: usize) -> Self {
        const STEPS: [i64; 22] = [
            SECOND,
            2 * SECOND,
            5 * SECOND,
            10 * SECOND,
            15 * SECOND,
            30 * SECOND,
            MINUTE,
            2 * MINUTE,
            5 * MINUTE,
            10 * MINUTE,
            15 * MINUTE,
            30 * MINUTE,
            HOUR,
            2 * HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
            2 * DAY,
            7 * DAY,
            14 * DAY,
            28 * DAY,
        ];
        let (min, max) = (min.min(max), max.max(min));
        // A little room either side, so the first and last points are not on the plot's edge.
        let span = (max.saturating_sub(min)).max(MINUTE);
        let pad = span / 20;
        let (lo, hi) = (min.saturating_sub(pad), max.saturating_add(pad));
        let max_ticks = max_ticks.max(2) as i64;
        let step = STEPS
            .iter()
            .copied()
            .find(|s| (hi - lo) / s < max_ticks)
            // Beyond 28 days a tick: whole multiples of 28 days.
            .unwrap_or_else(|| ((hi - lo) / max_ticks / (28 * DAY) + 1) * 28 * DAY);
        let first = lo.div_euclid(step) + 1;
        let last = hi.div_euclid(step);
        let values: Vec<i64> = (first..=last).map(|i| i * step).collect();
        let day_of = |ms: i64| crate::record::format_rfc3339(ms)[..10].to_string();
        let date = match (values.first(), values.last()) {
            (Some(&a), Some(&b)) if step < DAY && day_of(a) == day_of(b) => Some(day_of(a)),
            _ => None,
        };
        TimeAxis {
            lo,
            hi,
            values,
            step,
            date,
        }
    }

    pub fn label(&self, ms: i64) -> String {
        let text = crate::record::format_rfc3339(ms); // 2024-06-01T12:05:30.000Z
        if self.step >= DAY {
            text[..10].to_string()
        } else if self.date.is_none() {
            format!("{} {}", &text[5..10], &text[11..16])
        } else if self.step < MINUTE {
            text[11..19].to_string()
        } else {
            text[11..16].to_string()
        }
    }
}

/// Reads an RFC 3339 timestamp (`2024-06-01T12:00:00Z`, `2024-06-01T12:00:00.123+02:00`, also with a
/// space for the `T`, or a date alone) as milliseconds since the epoch.
pub(super) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, m, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    if d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if b.len() == 10 {
        return Some(days * DAY);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if b.get(16) != Some(&b':') || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        let frac = &b[start..i.min(start + 3)];
        ms = frac.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'))
            * 10i64.pow(3 - frac.len() as u32);
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let minutes = digits(i + 1, 2)? * 60 + digits(i + 4, 2)?;
            if sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    Some(days * DAY + h * HOUR + (mi - offset) * MINUTE + sec * SECOND + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since the epoch of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A linear axis from `lo` to `hi` with ticks (and grid lines) exactly at `ticks`: plotters' own
/// `with_key_points` wrapper has no label formatter for floats.
pub(super) struct Ticked {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold lines: asked for light ones, there are none.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A drawing error from plotters, as text (drawing into memory fails only on a font problem).
pub(super) type Drawn = Result<(), String>;

pub(super) fn drawing_error<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> String {
    format!("cannot draw the chart: {e}")
}

/// Draws with `draw` into an SVG document of `size`.
pub(super) fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(drawing_error)?;
    }
    out.push('\n');
    Ok(out)
}

/// Draws with `draw` into an RGB bitmap of `size`, encoded as PNG.
pub(super) fn png(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<PngBackend<'_>, Shift>) -> Drawn,
) -> Result<Vec<u8>, String> {
    let (w, h) = size;
    let mut pixels = vec![0xFF; w as usize * h as usize * 3];
    {
        let root = PngBackend(BitMapBackend::with_buffer(&mut pixels, size)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(drawing_error)?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| {
            writer.write_image_data(&pixels)?;
            writer.finish()
        })
        .map_err(|e| format!("cannot encode the chart as PNG: {e}"))?;
    Ok(out)
}

/// Clears the image and draws the title centred at the top, as both kinds of chart start.
pub(super) fn background_and_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    width: u32,
) -> Drawn {
    root.fill(&BACKGROUND).map_err(drawing_error)?;
    let style = font(TITLE_SIZE, TEXT, HPos::Center, VPos::Top);
    text(root, title, (width as i32 / 2, MARGIN as i32), &style)
}

/// Draws `text` on `area` at the pixel `at` with `style`.
pub(super) fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    at: (i32, i32),
    style: &TextStyle<'_>,
) -> Drawn {
    if text.is_empty() {
        return Ok(());
    }
    area.draw(&Text::new(text, at, style.clone()))
        .map_err(drawing_error)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Decodes to (width, height, RGB pixels).
    pub(crate) fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("valid PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// The opening tags of every `<name` element in an SVG document.
    pub(crate) fn elements<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        svg.match_indices(&open)
            .map(|(i, _)| &svg[i..i + svg[i..].find('>').expect("tag ends")])
            .collect()
    }

    pub(crate) fn attr<'a>(element: &'a str, name: &str) -> &'a str {
        let key = format!(" {name}=\"");
        let start = element
            .find(&key)
            .unwrap_or_else(|| panic!("{name} in {element}"))
            + key.len();
        &element[start..start + element[start..].find('"').expect("closing quote")]
    }

    pub(crate) fn num(element: &str, name: &str) -> f64 {
        attr(element, name).parse().expect("number")
    }

    /// The `<text>` elements' contents, in document order.
    pub(crate) fn texts(svg: &str) -> Vec<String> {
        texts_at(svg).into_iter().map(|(t, _)| t).collect()
    }

    /// The `<text>` elements' contents and `y`, in document order.
    pub(crate) fn texts_at(svg: &str) -> Vec<(String, f64)> {
        svg.split("<text ")
            .skip(1)
            .map(|t| {
                let tag = &t[..t.find('>').unwrap()];
                let body = &t[tag.len() + 1..t.find("</text>").unwrap()];
                let text = body
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&")
                    .trim()
                    .to_string();
                (text, num(&format!(" {tag}"), "y"))
            })
            .collect()
    }

    #[test]
    fn the_embedded_font_measures_text() {
        let narrow = text_width("iiii", LABEL_SIZE);
        let wide = text_width("MMMM", LABEL_SIZE);
        assert!(narrow > 0 && wide > 2 * narrow, "{narrow} {wide}");
        assert!(text_width("Música", LABEL_SIZE) > 0);
    }

    #[test]
    fn long_text_is_shortened_with_an_ellipsis() {
        assert_eq!(fit("Rock", 200, LABEL_SIZE), "Rock");
        let long = "Instrumental/Easy Listening/Ambient/Chill-out/Downtempo";
        let short = fit(long, 200, LABEL_SIZE);
        assert!(short.ends_with('…') && short.len() < long.len(), "{short}");
        assert!(long.starts_with(short.trim_end_matches('…')));
        assert!(text_width(&short, LABEL_SIZE) <= 200);
        // One character more would not fit.
        let n = short.chars().count() - 1;
        let longer: String = long.chars().take(n + 1).collect::<String>() + "…";
        assert!(text_width(&longer, LABEL_SIZE) > 200);
        assert_eq!(fit("tab\there", 500, LABEL_SIZE), "tab here");
        assert_eq!(fit("abc", 0, LABEL_SIZE), "");
    }

    #[test]
    fn values_use_three_decimals() {
        assert_eq!(format_value(1.9364), "1.936");
        assert_eq!(format_value(-0.0), "0.000");
        assert_eq!(format_value(f64::NAN), "n/a");
        assert_eq!(format_value(f64::NEG_INFINITY), "n/a");
        assert_eq!(format_value(1e-5), "1.00e-5");
    }

    #[test]
    fn ticks_are_nice_numbers() {
        let axis = Axis::new(0.0, 1.936, true);
        let labels: Vec<String> = axis.values.iter().map(|&v| axis.label(v)).collect();
        assert_eq!(labels, ["0", "0.5", "1.0", "1.5", "2.0"]);
        let axis = Axis::new(0.92, 2.4, false);
        assert!(
            axis.lo > 0.0 && axis.lo <= 0.92 && axis.hi >= 2.4,
            "{axis:?}"
        );
        for max in [0.003, 0.7, 1.0, 9.9, 42.0, 137.5, 2.5e6, 7e12] {
            let axis = Axis::new(0.0, max, true);
            let step = axis.values[1] - axis.values[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            let nice = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .any(|m| (mantissa - m).abs() < 1e-9);
            assert!(nice, "step {step} for {max}");
            assert!(axis.hi >= max && axis.lo == 0.0);
            assert!((4..=11).contains(&axis.values.len()), "{max}: {axis:?}");
        }
        let axis = Axis::new(5.0, 5.0, false);
        assert!(axis.lo < 5.0 && axis.hi > 5.0);
        let axis = Axis::new(-3.2, 7.9, true);
        assert!(axis.lo <= -3.2 && axis.hi >= 7.9 && axis.values.contains(&0.0));
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        let start = parse_rfc3339("2024-06-01T12:00:00Z").unwrap();
        let axis = TimeAxis::new(start, start + 4 * MINUTE, 8);
        let labels: Vec<String> = axis.values.iter().map(|&t| axis.label(t)).collect();
        assert_eq!(labels, ["12:00", "12:01", "12:02", "12:03", "12:04"]);
        assert_eq!(axis.date.as_deref(), Some("2024-06-01"));
        assert!(axis.lo < start && axis.hi > start + 4 * MINUTE);

        let axis = TimeAxis::new(start, start + 3 * DAY, 8);
        let labels: Vec<String> = axis.values.iter().map(|&t| axis.label(t)).collect();
        assert_eq!(labels[..2], ["06-01 12:00", "06-02 00:00"]);
        assert!(axis.date.is_none() && labels.len() <= 8, "{labels:?}");

        let axis = TimeAxis::new(start, start + 60 * DAY, 5);
        assert!(axis.values.len() <= 5);
        assert_eq!(axis.label(axis.values[0]).len(), "2024-06-01".len());
    }

    #[test]
    fn rfc3339_text_is_read() {
        let noon = 1_717_243_200_000;
        assert_eq!(parse_rfc3339("2024-06-01T12:00:00.000Z"), Some(noon));
        assert_eq!(parse_rfc3339("2024-06-01T12:00:00Z"), Some(noon));
        assert_eq!(parse_rfc3339("2024-06-01 14:00:00+02:00"), Some(noon));
        assert_eq!(
            parse_rfc3339("2024-06-01T11:30:00.5-00:30"),
            Some(noon + 500)
        );
        assert_eq!(parse_rfc3339("2024-06-01"), Some(noon - 12 * HOUR));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z").map(crate::record::format_rfc3339),
            Some("2000-02-29T00:00:00.000Z".into())
        );
        for bad in [
            "",
            "Rock",
            "2024-13-01",
            "2023-02-29",
            "2024-06-01T12:00",
            "2024-06-01T12:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    // `draw` itself would not do: it is not generic over the backend's lifetime, the closure is.
    #[allow(clippy::redundant_closure)]
    fn png_and_svg_are_produced() {
        fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> Drawn {
            root.fill(&BACKGROUND).map_err(drawing_error)?;
            text(
                root,
                "Música",
                (10, 10),
                &font(LABEL_SIZE, TEXT, HPos::Left, VPos::Top),
            )
        }
        let (w, h, pixels) = decode(&png((64, 32), |root| draw(root)).unwrap());
        assert_eq!((w, h), (64, 32));
        assert!(pixels.iter().any(|&p| p < 0x80), "text drawn");
        let doc = svg((64, 32), |root| draw(root)).unwrap();
        assert_eq!(texts(&doc), ["Música"]);
        assert!(doc.contains(&format!("font-family=\"{FAMILY}\"")));
    }
}
