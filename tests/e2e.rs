//! End-to-end tests: the real `tributary` binary on the fixtures, compared with golden files and with
//! results computed here independently of the pipeline.
//!
//! Golden files live in `tests/golden/`; `TRIBUTARY_BLESS=1` rewrites those that record our own output
//! (never `top20.md`, which is the seed project's published table).

mod common;
// Watching a run: metrics, the stats line (in a file of its own).
mod e2e_observe;
// `tributary run --watch`: plugins swapped in a running pipeline.
mod e2e_hotswap;

use common::*;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `pipeline.toml` copied into `dir`, replaying the fixture (by absolute path) so outputs land in `dir`.
fn default_pipeline_in(dir: &Path) -> PathBuf {
    let text = default_pipeline_replaying(&fixture("music_streaming_events.jsonl"));
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn golden(name: &str) -> PathBuf {
    repo().join("tests/golden").join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("TRIBUTARY_BLESS").is_some() && name != "top20.md" {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// The capture's records as (timestamp, payload).
fn capture(path: &Path) -> Vec<(i64, Json)> {
    read_jsonl(path)
        .into_iter()
        .map(|line| {
            let payload: Json = serde_json::from_str(line["value"].as_str().unwrap()).unwrap();
            (line["timestamp"].as_i64().unwrap(), payload)
        })
        .collect()
}

/// Days since the epoch of a civil date (Howard Hinnant's algorithm), to read RFC 3339 bounds back.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_rfc3339(s: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let days = days_from_civil(n(0, 4), n(5, 7), n(8, 10));
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + n(20, 23)
}

/// Per (1-minute window start, genre): (sum of streams × 1e8, count), computed straight from a capture.
fn independent_minutes(records: &[(i64, Json)]) -> BTreeMap<(i64, String), (f64, i64)> {
    let mut m: BTreeMap<(i64, String), (f64, i64)> = BTreeMap::new();
    for (ts, p) in records {
        let start = ts - ts.rem_euclid(60_000);
        let e = m
            .entry((start, p["genre"].as_str().unwrap().to_string()))
            .or_default();
        e.0 += p["streams"].as_f64().unwrap() * 1e8;
        e.1 += 1;
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn default_pipeline_reproduces_the_seed_table_and_chart() {
    let dir = scratch("default");
    let file = default_pipeline_in(&dir);
    let (stdout, stderr) = run_pipeline(&dir, &file);
    check_golden(
        "top20.md",
        table(&stdout, "Top 20 genres by average streams"),
    );

    for stage in [
        "events",
        "scaled",
        "avg_by_genre",
        "avg_by_genre_1m",
        "top_artists",
        "top_artists_file",
        "top_artists_table",
        "top20_table",
        "top20_chart",
        "trend_chart",
        "per_minute",
    ] {
        assert!(
            stderr.contains(&format!("  {stage} (")),
            "summary line for {stage} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("no record dead-lettered"), "{stderr}");

    check_bar_chart(&dir);
    check_trend_chart(&dir);
}

/// The markdown table printed under the heading `## {title}`, up to the blank line that ends it.
fn table<'a>(stdout: &'a str, title: &str) -> &'a str {
    let heading = format!("## {title}\n\n");
    let start = stdout
        .find(&heading)
        .unwrap_or_else(|| panic!("no table `{title}` in:\n{stdout}"))
        + heading.len();
    let len = stdout[start..]
        .find("\n\n")
        .map_or(stdout.len() - start, |i| i + 1);
    &stdout[start..start + len]
}

#[test]
fn top_artists_equal_an_independent_computation() {
    let dir = scratch("top-artists");
    let file = default_pipeline_in(&dir);
    let (stdout, _) = run_pipeline(&dir, &file);
    // The golden file is written by `tests/golden/top_artists.py` from the fixture alone.
    let out = std::fs::read_to_string(dir.join("out/top_artists.jsonl")).unwrap();
    assert_eq!(
        out,
        std::fs::read_to_string(golden("top_artists.jsonl")).unwrap(),
        "out/top_artists.jsonl differs from tests/golden/top_artists.jsonl"
    );

    // And again here, from the capture: per genre, artists by total streams x 1e8, ties by name.
    let mut totals: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (_, payload) in capture(&fixture("music_streaming_events.jsonl")) {
        let streams = payload["streams"].as_f64().unwrap() * 1e8;
        *totals
            .entry(payload["genre"].as_str().unwrap().into())
            .or_default()
            .entry(payload["artist"].as_str().unwrap().into())
            .or_default() += streams;
    }
    let rows = read_jsonl(&dir.join("out/top_artists.jsonl"));
    let mut expected = Vec::new();
    for (genre, artists) in &totals {
        let mut ranked: Vec<(&String, &f64)> = artists.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        for (rank, (artist, total)) in ranked.into_iter().take(3).enumerate() {
            expected.push((genre.clone(), rank as i64 + 1, artist.clone(), *total));
        }
    }
    assert_eq!(rows.len(), expected.len());
    for (row, (genre, rank, artist, total)) in rows.iter().zip(&expected) {
        assert_eq!(row["genre"], **genre, "{row}");
        assert_eq!(row["rank"], *rank, "{row}");
        assert_eq!(row["artist"], **artist, "{row}");
        assert!(close(row["total"].as_f64().unwrap(), *total), "{row}");
        assert!(row["window_start"].is_null(), "{row}");
    }

    // The table shows the genres of the seed's top 5 by average streams, each with its top 3.
    let shown = table(
        &stdout,
        "Top 3 artists per genre, top 5 genres by average streams",
    );
    let cells = |line: &str| -> Vec<String> {
        line.split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let top20 = std::fs::read_to_string(golden("top20.md")).unwrap();
    let top5: Vec<String> = top20
        .lines()
        .skip(2)
        .take(5)
        .map(|l| cells(l)[0].clone())
        .collect();
    let lines: Vec<Vec<String>> = shown.lines().skip(2).map(cells).collect();
    let mut genres: Vec<String> = lines.iter().map(|c| c[0].clone()).collect();
    genres.dedup();
    assert_eq!(genres, top5, "{shown}");
    for line in &lines {
        let genre = &line[0];
        let want: Vec<&(String, i64, String, f64)> =
            expected.iter().filter(|e| e.0 == *genre).collect();
        let (rank, artist) = (line[2].parse::<i64>().unwrap(), &line[3]);
        assert_eq!(
            (&want[rank as usize - 1].2, line[4].clone()),
            (artist, format!("{:.3}", want[rank as usize - 1].3 * 1e-9)),
            "{shown}"
        );
    }
    assert_eq!(
        lines.len(),
        top5.iter()
            .map(|g| expected.iter().filter(|e| e.0 == *g).count())
            .sum::<usize>(),
        "every artist row of the 5 genres: {shown}"
    );
}

/// An SVG element's attribute.
fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = element
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {element}"))
        + key.len();
    &element[start..start + element[start..].find('"').unwrap()]
}

fn attr_num(element: &str, name: &str) -> f64 {
    attr(element, name).parse().unwrap()
}

/// The opening tags of an SVG document's `<name …>` elements.
fn svg_elements<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    svg.match_indices(&open)
        .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap()])
        .collect()
}

/// The `<text>` elements of an SVG document: (text, x, y), in document order.
fn svg_texts(svg: &str) -> Vec<(String, f64, f64)> {
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let tag = format!(" {}", &t[..t.find('>').unwrap()]);
            let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            let text = body.trim().replace("&amp;", "&");
            (text, attr_num(&tag, "x"), attr_num(&tag, "y"))
        })
        .collect()
}

/// The bar chart's structure, against the seed's published table: 20 bars, largest on top, each
/// genre's label beside its bar, in the table's order, with its value.
fn check_bar_chart(dir: &Path) {
    let png = std::fs::read(dir.join("out/avg_streams_per_genre.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(dir.join("out/avg_streams_per_genre.svg")).unwrap();
    // The table the seed published: genre and value, largest first.
    let table = std::fs::read_to_string(golden("top20.md")).unwrap();
    let expected: Vec<(String, String)> = table
        .lines()
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect();
    assert_eq!(expected.len(), 20);

    // Bars are the steel-blue rectangles.
    let bars: Vec<&str> = svg_elements(&svg, "rect")
        .into_iter()
        .filter(|r| attr(r, "fill") == "#4682B4")
        .collect();
    assert_eq!(bars.len(), 20, "one bar per genre in the top 20");
    let ys: Vec<f64> = bars.iter().map(|b| attr_num(b, "y")).collect();
    assert!(
        ys.windows(2).all(|w| w[0] < w[1]),
        "bars top to bottom: {ys:?}"
    );
    let widths: Vec<f64> = bars.iter().map(|b| attr_num(b, "width")).collect();
    assert!(
        widths.windows(2).all(|w| w[0] >= w[1]),
        "largest on top: {widths:?}"
    );
    assert!(
        widths[0] > widths[19] * 1.5,
        "lengths follow the values: {widths:?}"
    );

    let texts = svg_texts(&svg);
    let left = attr_num(bars[0], "x");
    for (i, ((genre, value), bar)) in expected.iter().zip(&bars).enumerate() {
        let center = attr_num(bar, "y") + attr_num(bar, "height") / 2.0;
        let beside = |t: &(String, f64, f64)| (t.2 - center).abs() < 4.0;
        let label = texts
            .iter()
            .find(|t| &t.0 == genre)
            .unwrap_or_else(|| panic!("label `{genre}` in the chart"));
        assert!(
            beside(label) && label.1 < left,
            "`{genre}` left of bar {i}: {label:?}"
        );
        let shown = texts
            .iter()
            .find(|t| &t.0 == value && beside(t))
            .unwrap_or_else(|| panic!("value {value} beside bar {i} (`{genre}`)"));
        assert!(
            shown.1 > left + attr_num(bar, "width"),
            "value right of its bar"
        );
    }
}

/// The trend chart's structure: one line per genre for the 5 genres with the largest mean of their
/// 1-minute averages (computed here from the capture), named in the legend in that order.
fn check_trend_chart(dir: &Path) {
    let png = std::fs::read(dir.join("out/avg_streams_trend.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(dir.join("out/avg_streams_trend.svg")).unwrap();

    let minutes = independent_minutes(&capture(&fixture("music_streaming_events.jsonl")));
    let mut per_genre: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ((_, genre), (sum, count)) in &minutes {
        per_genre
            .entry(genre)
            .or_default()
            .push(sum / *count as f64);
    }
    let mut means: Vec<(&str, f64, usize)> = per_genre
        .iter()
        .map(|(g, avgs)| (*g, avgs.iter().sum::<f64>() / avgs.len() as f64, avgs.len()))
        .collect();
    means.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top5 = &means[..5];

    // Series lines are the 2 px polylines (axes and grid lines are 1 px).
    let lines: Vec<&str> = svg_elements(&svg, "polyline")
        .into_iter()
        .filter(|p| attr(p, "stroke-width") == "2")
        .collect();
    assert_eq!(lines.len(), 5, "one line per genre: {lines:?}");
    let colours: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| attr(l, "stroke")).collect();
    assert_eq!(colours.len(), 5, "five distinct colours");
    for ((genre, _, windows), line) in top5.iter().zip(&lines) {
        let vertices = attr(line, "points").split_whitespace().count();
        assert_eq!(
            vertices, *windows,
            "`{genre}` has a point per window it appears in"
        );
    }

    // The legend: the names, top to bottom, in the order of their means, right of the plot.
    let texts = svg_texts(&svg);
    let mut legend: Vec<&(String, f64, f64)> = texts
        .iter()
        .filter(|t| per_genre.contains_key(t.0.as_str()))
        .collect();
    legend.sort_by(|a, b| a.2.total_cmp(&b.2));
    let names: Vec<&str> = legend.iter().map(|t| t.0.as_str()).collect();
    let expected: Vec<&str> = top5.iter().map(|m| m.0).collect();
    assert_eq!(names, expected);
    assert_eq!(
        names,
        [
            "Jazz/Big Band",
            "Bubblegum Pop",
            "Folk Rock",
            "Instrumental/Easy Listening",
            "Pop/Classic"
        ]
    );
    // Times on the x axis: the five 1-minute windows, and the date in the axis title.
    for tick in ["12:00", "12:01", "12:02", "12:03", "12:04"] {
        assert!(texts.iter().any(|t| t.0 == tick), "tick {tick}");
    }
    assert!(texts
        .iter()
        .any(|t| t.0 == "Window start (UTC, 2024-06-01)"));
}

#[test]
fn per_minute_windows_equal_an_independent_computation() {
    let dir = scratch("per-minute");
    let file = default_pipeline_in(&dir);
    run_pipeline(&dir, &file);
    let out = dir.join("out/avg_streams_per_genre_1m.jsonl");
    check_golden(
        "avg_streams_per_genre_1m.jsonl",
        &std::fs::read_to_string(&out).unwrap(),
    );

    let expected = independent_minutes(&capture(&fixture("music_streaming_events.jsonl")));
    assert_minutes(&read_jsonl(&out), &expected);
}

/// 1-minute result rows equal the independent computation: one row per (window, genre), its count,
/// and its average to the last digits.
fn assert_minutes(rows: &[Json], expected: &BTreeMap<(i64, String), (f64, i64)>) {
    assert_eq!(rows.len(), expected.len(), "one row per (window, genre)");
    for row in rows {
        let start = parse_rfc3339(row["window_start"].as_str().unwrap());
        let end = parse_rfc3339(row["window_end"].as_str().unwrap());
        assert_eq!(end - start, 60_000);
        let key = (start, row["genre"].as_str().unwrap().to_string());
        let (sum, count) = expected[&key];
        assert_eq!(row["count"].as_i64().unwrap(), count, "{key:?}");
        assert!(
            close(row["avg"].as_f64().unwrap(), sum / count as f64),
            "{key:?}: {row}"
        );
    }
}

#[test]
fn swapping_the_aggregate_plugin_changes_the_output_without_rebuilding() {
    let dir = scratch("swap");
    let file = default_pipeline_in(&dir);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("plugin = \"average\"").count(), 2);
    std::fs::write(
        &file,
        text.replace("plugin = \"average\"", "plugin = \"sum\"")
            .replace("sort_by = \"avg\"", "sort_by = \"sum\""),
    )
    .unwrap();
    run_pipeline(&dir, &file);
    let expected = independent_minutes(&capture(&fixture("music_streaming_events.jsonl")));
    let rows = read_jsonl(&dir.join("out/avg_streams_per_genre_1m.jsonl"));
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        assert!(row.get("avg").is_none(), "average is gone: {row}");
        let key = (
            parse_rfc3339(row["window_start"].as_str().unwrap()),
            row["genre"].as_str().unwrap().to_string(),
        );
        assert!(
            close(row["sum"].as_f64().unwrap(), expected[&key].0),
            "{key:?}: {row}"
        );
    }
}

#[test]
fn a_plugin_given_as_a_path_outside_the_repo_works() {
    // The `max` plugin's module, copied under another name to a directory outside the repository.
    let built = repo().join("target/plugins/wasm32-unknown-unknown/release/max.wasm");
    assert!(
        built.exists(),
        "{} is built by host/build.rs",
        built.display()
    );
    let outside = std::env::temp_dir().join(format!("tributary-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    let plugin = outside.join("my_max.wasm");
    std::fs::copy(&built, &plugin).unwrap();

    let dir = scratch("path-plugin");
    let capture_path = fixture("music_streaming_events.jsonl");
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[stages.events]
type = "replay"
path = "{}"

[stages.max_by_genre]
type = "window"
inputs = ["events"]
plugin = "{}"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "global" }}

[stages.out]
type = "file"
inputs = ["max_by_genre"]
path = "max.jsonl"
"#,
            capture_path.display(),
            plugin.display()
        ),
    )
    .unwrap();
    run_pipeline(&dir, &file);
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for (_, p) in capture(&capture_path) {
        let e = expected
            .entry(p["genre"].as_str().unwrap().to_string())
            .or_insert(f64::MIN);
        *e = e.max(p["streams"].as_f64().unwrap());
    }
    let rows = read_jsonl(&dir.join("max.jsonl"));
    assert_eq!(rows.len(), 73);
    for row in rows {
        assert_eq!(
            row["max"].as_f64().unwrap(),
            expected[row["genre"].as_str().unwrap()],
            "{row}"
        );
        assert!(
            row["window_start"].is_null(),
            "the global window has no bounds"
        );
    }
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn bad_configs_report_every_problem_with_file_line_and_column() {
    let dir = scratch("bad-config");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        r#"[stages.events]
type = "replay"
path = "missing.jsonl"

[stages.scaled]
type = "transform"
inputs = ["event"]
plugin = "scale"
config = { field = "streams" }

[stages.avg]
type = "window"
inputs = ["events"]
plugin = "scale"
key = "genre"
window = { kind = "tumbling", size = "1 minute" }

[stages.loop_a]
type = "transform"
inputs = ["loop_b"]
plugin = "no_such_plugin"

[stages.loop_b]
type = "transform"
inputs = ["loop_a"]
plugin = "scale"
config = { field = "streams", factor = 2, extra = true }

[stages.out]
type = "flie"
inputs = ["avg"]
"#,
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["validate", "bad.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    let f = file.display().to_string();
    let f = f.strip_prefix(&format!("{}/", dir.display())).unwrap_or(&f);
    for expected in [
        // Parse and graph problems, all at once.
        format!("{f}:16:38: error: in stage `avg` (type `window`): unknown unit `minute` in duration `1 minute`"),
        format!("{f}:30:8: error: unknown stage type `flie` in stage `out`; valid types: replay, kafka, transform, window, console, file, chart"),
        format!("{f}:7:11: error: stage `scaled` reads from `event`, which is not a stage"),
        format!("{f}:18:9: error: stages form a cycle"),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(
        stderr.contains("   ^"),
        "a caret under the culprit:\n{stderr}"
    );

    // Once the file parses, building the stages reports every stage's problem too.
    std::fs::write(
        &file,
        r#"[stages.events]
type = "replay"
path = "missing.jsonl"

[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = { field = "streams" }

[stages.avg]
type = "window"
inputs = ["scaled"]
plugin = "scale"
key = "genre"
window = { kind = "tumbling", size = "1m" }

[stages.other]
type = "transform"
inputs = ["scaled"]
plugin = "no_such_plugin"

[stages.out]
type = "file"
inputs = ["avg", "other"]
path = "out.jsonl"
"#,
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["validate", "bad.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        format!("{f}:3:8: error: stage `events`: capture file `./missing.jsonl` not found"),
        format!("{f}:9:10: error: stage `scaled`: plugin `scale` rejected its config: missing config key `factor`"),
        format!("{f}:14:10: error: stage `avg`: `scale` is a transform plugin, but this stage needs an aggregate plugin"),
        format!("{f}:21:10: error: stage `other`: no bundled plugin named `no_such_plugin`; bundled plugins are: scale, average, max, sum"),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(stderr.contains("4 problems found"), "{stderr}");
}

/// A stage with several bad values reports each, and its `inputs` are still checked.
#[test]
fn validate_reports_every_problem_within_one_stage() {
    let dir = scratch("e2e_validate_one_stage");
    std::fs::write(
        dir.join("bad.toml"),
        r#"[stages.events]
type = "replay"
path = "events.jsonl"

[stages.avg]
type = "window"
inputs = ["events", "nowhere"]
plugin = "average"
key = "genre"
window = { kind = "tumbling", size = "1 minute" }
max_delay = "soon"
"#,
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["validate", "bad.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        "bad.toml:10:38: error: in stage `avg` (type `window`): unknown unit `minute` in duration `1 minute`",
        "bad.toml:11:13: error: in stage `avg` (type `window`): invalid duration `soon`",
        "bad.toml:7:21: error: stage `avg` reads from `nowhere`, which is not a stage",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(stderr.contains("3 problems found"), "{stderr}");
}

#[test]
fn bad_records_are_dead_lettered_and_the_rest_is_unchanged() {
    // The bad-records fixture is the first 40 good records with bad lines among them.
    let dir = scratch("bad-records");
    let good: String = std::fs::read_to_string(fixture("music_streaming_events.jsonl"))
        .unwrap()
        .lines()
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("good.jsonl"), good).unwrap();

    let results = |capture: &Path, name: &str| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let text = default_pipeline_replaying(capture);
        std::fs::write(sub.join("pipeline.toml"), text).unwrap();
        let (stdout, stderr) = run_pipeline(&sub, &sub.join("pipeline.toml"));
        let minutes =
            std::fs::read_to_string(sub.join("out/avg_streams_per_genre_1m.jsonl")).unwrap();
        (
            stdout,
            stderr,
            minutes,
            read_jsonl(&sub.join("out/dead_letter.jsonl")),
        )
    };
    let (good_table, _, good_minutes, good_dead) = results(&dir.join("good.jsonl"), "good");
    let (bad_table, stderr, bad_minutes, dead) = results(&fixture("bad_records.jsonl"), "bad");
    assert!(good_dead.is_empty());
    assert_eq!(bad_table, good_table);
    assert_eq!(bad_minutes, good_minutes);

    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d["stage"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:#?}");
    let expect = [
        (
            "events",
            "invalid capture line: expected ident at line 1 column 2",
        ),
        ("events", "record value is not valid JSON"),
        ("scaled", "missing field `streams`"),
        ("scaled", "field `streams` must be a number, found a string"),
        ("events", "invalid capture line: missing field `timestamp`"),
        ("events", "record value is not valid JSON"),
    ];
    for (stage, reason) in expect {
        assert!(
            reasons
                .iter()
                .any(|(s, r)| *s == stage && r.starts_with(reason)),
            "no {stage}: {reason} in {reasons:#?}"
        );
    }
    // Undecodable lines are kept as read, so they can be fixed and replayed.
    let raw: Vec<&str> = dead.iter().filter_map(|d| d["line"].as_str()).collect();
    assert!(raw.iter().any(|l| l.contains("this is not json at all")));
    assert!(stderr.contains("6 record(s) dead-lettered"), "{stderr}");
}

#[test]
fn the_fixture_is_what_its_generator_makes() {
    for (args, name) in [
        (&[][..], "music_streaming_events.jsonl"),
        (&["--bad"][..], "bad_records.jsonl"),
    ] {
        let out = std::process::Command::new("python3")
            .arg(repo().join("fixtures/generate.py"))
            .args(args)
            .args(["--out", "-"])
            .output()
            .expect("python3 runs the generator");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read(fixture(name)).unwrap();
        assert!(
            out.stdout == committed,
            "fixtures/{name} differs from what fixtures/generate.py writes"
        );
    }
}

#[test]
fn validate_accepts_the_default_pipeline() {
    let mut cmd = tributary();
    cmd.current_dir(repo()).args(["validate", "pipeline.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("pipeline.toml: ok"), "{stderr}");
}

/// A `blackhole` sink takes every record (the summary counts them) and writes nothing; one given a
/// field is refused with its position.
#[test]
fn a_blackhole_sink_counts_and_drops_what_it_takes() {
    let dir = scratch("e2e_blackhole");
    let file = dir.join("p.toml");
    let body = format!(
        "[stages.events]\ntype = \"replay\"\npath = {:?}\n\n[stages.drop]\ntype = \"blackhole\"\ninputs = [\"events\"]\n",
        fixture("music_streaming_events.jsonl")
    );
    std::fs::write(&file, &body).unwrap();
    let (stdout, stderr) = run_pipeline(&dir, &file);
    assert!(stdout.is_empty(), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("drop (blackhole)"))
        .unwrap_or_else(|| panic!("no summary line for the sink:\n{stderr}"));
    let counts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(counts[2..6], ["in", "299", "out", "0"], "{line}");
    let dead = std::fs::metadata(dir.join("out/dead_letter.jsonl")).unwrap();
    assert_eq!(dead.len(), 0, "no record dead-lettered");
    let entries: Vec<_> = std::fs::read_dir(dir.join("out")).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing written but the dead-letter file");

    let mut cmd = tributary();
    cmd.current_dir(&dir)
        .args(["validate", "--explain", "p.toml"]);
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("drop (blackhole)\n  inputs:  events\n  outputs: -\n  reads:   nothing"),
        "{stdout}"
    );

    std::fs::write(&file, format!("{body}path = \"x\"\n")).unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["validate", "p.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("p.toml:8:1")
            && stderr.contains("unknown field `path`, there are no fields"),
        "{stderr}"
    );
}

/// `validate` points at a Kafka `properties` table the client refuses, and the quoted line hides the
/// password in it.
#[test]
fn validate_never_prints_a_secret() {
    let dir = scratch("e2e_validate_secret");
    let file = dir.join("secret.toml");
    std::fs::write(
        &file,
        r#"[stages.events]
type = "kafka"
brokers = "127.0.0.1:9092"
topics = ["t"]
group_id = "g"
properties = { "sasl.password" = "hunter2", "no.such.property" = "1" }

[stages.out]
type = "file"
inputs = ["events"]
path = "out.jsonl"
"#,
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.arg("validate").arg(&file);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no.such.property"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && stderr.contains(r#""sasl.password" = "***""#),
        "{stderr}"
    );
}

/// A capture line that is not UTF-8 (here in the middle of the fixture) is dead-lettered with its
/// bytes shown lossily and its line number; the replay goes on, and the results are those of the
/// fixture.
#[test]
fn a_line_that_is_not_utf8_is_dead_lettered_and_the_replay_goes_on() {
    let dir = scratch("e2e_not_utf8");
    let fixture_text = std::fs::read(fixture("music_streaming_events.jsonl")).unwrap();
    let cut = fixture_text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(99)
        .unwrap()
        .0
        + 1;
    let mut bytes = fixture_text[..cut].to_vec();
    bytes.extend_from_slice(b"{\"topic\":\"t\",\"value\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(&fixture_text[cut..]);
    let capture = dir.join("capture.jsonl");
    std::fs::write(&capture, bytes).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, default_pipeline_replaying(&capture)).unwrap();
    let (stdout, stderr) = run_pipeline(&dir, &file);
    assert!(stdout.contains("| Jazz/Big Band"), "{stdout}");
    let dead = read_jsonl(&dir.join("out/dead_letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("line is not valid UTF-8")
            && dead[0]["at"]["line"] == 101
            && dead[0]["line"].as_str().unwrap().contains('\u{fffd}'),
        "{}",
        dead[0]
    );
    assert!(stderr.contains("1 record(s) dead-lettered"), "{stderr}");
    let expected = std::fs::read_to_string(golden("top20.md")).unwrap();
    assert!(stdout.contains(expected.trim()), "{stdout}");
}

#[test]
fn parallel_decoding_keeps_the_order_of_a_large_capture() {
    // 100,000 records on 3 partitions, with bad lines among them: whatever the number of decode threads
    // and the batch size, the results and the dead letters are the same, byte for byte, and the results
    // equal an independent computation from the capture.
    let dir = scratch("e2e_parallel_decode");
    let generated = dir.join("generated.jsonl");
    generate(&generated, Some(100_000), 3);
    let records = capture(&generated);
    let good = std::fs::read(&generated).unwrap();
    let bad_lines: [&[u8]; 5] = [
        b"this is not json at all\n",
        b"{\"topic\":\"t\",\"value\":\"\xff\"}\n",
        b"{\"topic\":\"t\",\"partition\":0,\"offset\":1,\"timestamp\":1717243200000,\"key\":null,\"value\":\"{\\\"genre\\\":\\\"Rock\\\",\\\"streams\\\":\\\"many\\\"}\"}\n",
        b"{\"topic\":\"t\",\"partition\":0,\"offset\":1,\"timestamp\":1717243200000,\"key\":null,\"value\":\"[1]\"}\n",
        b"\n",
    ];
    let mut bytes = Vec::with_capacity(good.len() + 4096);
    let mut inserted = 0;
    for (i, line) in good.split_inclusive(|&b| b == b'\n').enumerate() {
        if i % 997 == 500 {
            bytes.extend_from_slice(bad_lines[inserted % bad_lines.len()]);
            inserted += 1;
        }
        bytes.extend_from_slice(line);
    }
    let capture_path = dir.join("capture.jsonl");
    std::fs::write(&capture_path, bytes).unwrap();
    // Every bad line but the blank ones is dead-lettered.
    let expected_dead = (0..inserted).filter(|i| i % bad_lines.len() != 4).count();

    let run = |threads: usize, batch: usize| {
        let sub = dir.join(format!("t{threads}-b{batch}"));
        std::fs::create_dir_all(&sub).unwrap();
        let text = tumbling_pipeline(&format!(
            "type = \"replay\"\npath = {:?}\ndecode_threads = {threads}\nbatch_size = {batch}",
            capture_path.display().to_string()
        ));
        std::fs::write(sub.join("pipeline.toml"), text).unwrap();
        let (_, stderr) = run_pipeline(&sub, &sub.join("pipeline.toml"));
        let read = |name: &str| std::fs::read_to_string(sub.join("out").join(name)).unwrap();
        // Stages write dead letters side by side, so only each stage's own order is deterministic.
        let mut dead: Vec<(String, String)> = read("dead_letter.jsonl")
            .lines()
            .map(|l| {
                let d: Json = serde_json::from_str(l).unwrap();
                (d["stage"].as_str().unwrap().to_string(), l.to_string())
            })
            .collect();
        dead.sort_by(|a, b| a.0.cmp(&b.0));
        (read("avg_streams_per_genre_1m.jsonl"), dead, stderr)
    };
    let (minutes, dead, stderr) = run(1, 1024);
    assert!(
        stderr.contains(&format!("{expected_dead} record(s) dead-lettered")),
        "{stderr}"
    );
    for (threads, batch) in [(3, 100), (2, 4096)] {
        let (m, d, _) = run(threads, batch);
        assert!(
            m == minutes,
            "{threads} threads, batch {batch}: results differ"
        );
        assert!(
            d == dead,
            "{threads} threads, batch {batch}: dead letters differ"
        );
    }

    // The source's dead letters name the lines in file order.
    let lines: Vec<i64> = dead
        .iter()
        .map(|(_, l)| serde_json::from_str::<Json>(l).unwrap())
        .filter_map(|d| d["at"]["line"].as_i64())
        .collect();
    let at_source = (0..inserted)
        .filter(|i| [0, 1, 3].contains(&(i % bad_lines.len())))
        .count();
    assert_eq!(lines.len(), at_source);
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");

    // And the results are the capture's, computed here (no record of the generator is late by 5 s).
    let late = stderr.contains("late      0");
    let expected = independent_minutes(&records);
    let rows: Vec<Json> = minutes
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(late, "{stderr}");
    assert_minutes(&rows, &expected);
}

#[test]
fn lines_laid_out_differently_mid_capture_give_the_same_results() {
    // The decoder reads a line laid out like the last one by comparing the text between values, and
    // learns a new layout from any line that differs. 100,000 records on 3 partitions where every fifth
    // line is rewritten in one of seven layouts that mean the same record (fields in another order,
    // spaces, an escape, a null key, another topic): the results are those of the unchanged capture,
    // byte for byte, and the independent computation's, with no dead letter, whatever the threads.
    let dir = scratch("e2e_layouts");
    let generated = dir.join("generated.jsonl");
    generate(&generated, Some(100_000), 3);
    let records = capture(&generated);
    let mut text = String::new();
    let original = std::fs::read_to_string(&generated).unwrap();
    for (i, line) in original.lines().enumerate() {
        if i % 5 != 2 {
            text.push_str(line);
            text.push('\n');
            continue;
        }
        let l: Json = serde_json::from_str(line).unwrap();
        let payload: serde_json::Map<String, Json> =
            serde_json::from_str(l["value"].as_str().unwrap()).unwrap();
        let (topic, partition, offset, timestamp) =
            (&l["topic"], &l["partition"], &l["offset"], &l["timestamp"]);
        let mut key = l["key"].clone();
        let mut value = serde_json::to_string(&payload).unwrap();
        let rewritten = match (i / 5) % 7 {
            // The payload's fields in reverse order.
            0 => {
                let reversed: serde_json::Map<String, Json> = payload.into_iter().rev().collect();
                value = serde_json::to_string(&reversed).unwrap();
                None
            }
            // `genre` where `track` was and the other way round: names of one length, so only the
            // names tell these lines from the others.
            6 => {
                let mut swapped = serde_json::Map::new();
                for name in ["genre", "artist", "track", "streams", "year"] {
                    swapped.insert(name.to_string(), payload[name].clone());
                }
                assert_eq!(swapped.len(), payload.len());
                value = serde_json::to_string(&swapped).unwrap();
                None
            }
            // Spaces between the envelope's tokens.
            1 => Some(format!(
                "{{ \"topic\" : {topic}, \"partition\" : {partition}, \"offset\" : {offset}, \"timestamp\" : {timestamp}, \"key\" : {key}, \"value\" : {} }}",
                Json::from(value.clone())
            )),
            // The envelope's fields in another order.
            2 => Some(format!(
                "{{\"value\":{},\"key\":{key},\"timestamp\":{timestamp},\"offset\":{offset},\"partition\":{partition},\"topic\":{topic}}}",
                Json::from(value.clone())
            )),
            // The genre's first letter escaped (`\u0041mbient` is `Ambient`).
            3 => {
                let genre = payload["genre"].as_str().unwrap();
                let first = genre.chars().next().unwrap();
                let escaped = format!("\\u{:04x}{}", first as u32, &genre[first.len_utf8()..]);
                value = value.replacen(
                    &format!("\"genre\":{}", Json::from(genre)),
                    &format!("\"genre\":\"{escaped}\""),
                    1,
                );
                assert!(value.contains("\\u00"), "{value}");
                None
            }
            4 => {
                key = Json::Null;
                None
            }
            _ => Some(
                line.replacen("\"topic\":\"music_streaming_events\"", "\"topic\":\"other\"", 1),
            ),
        };
        let rewritten = rewritten.unwrap_or_else(|| {
            format!(
                "{{\"topic\":{topic},\"partition\":{partition},\"offset\":{offset},\"timestamp\":{timestamp},\"key\":{key},\"value\":{}}}",
                Json::from(value)
            )
        });
        assert_ne!(rewritten, line);
        text.push_str(&rewritten);
        text.push('\n');
    }
    let changed = dir.join("changed.jsonl");
    std::fs::write(&changed, text).unwrap();
    assert_eq!(
        capture(&changed),
        records,
        "the rewritten lines mean the same records"
    );

    let run = |name: &str, capture: &Path, threads: usize| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let source = format!(
            "type = \"replay\"\npath = {:?}\ndecode_threads = {threads}",
            capture.display().to_string()
        );
        std::fs::write(sub.join("pipeline.toml"), tumbling_pipeline(&source)).unwrap();
        let (_, stderr) = run_pipeline(&sub, &sub.join("pipeline.toml"));
        assert!(
            stderr.contains("no record dead-lettered"),
            "{name}: {stderr}"
        );
        std::fs::read_to_string(sub.join("out/avg_streams_per_genre_1m.jsonl")).unwrap()
    };
    let unchanged = run("unchanged", &generated, 2);
    for threads in [1, 2] {
        let minutes = run(&format!("changed-{threads}"), &changed, threads);
        assert!(
            minutes == unchanged,
            "{threads} decode threads: results differ"
        );
    }
    let rows: Vec<Json> = unchanged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_minutes(&rows, &independent_minutes(&records));
}

/// A pipeline replaying the fixture through the test-only `hostile` plugin (see `plugins/hostile`).
fn hostile_pipeline(dir: &Path, behave: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[dead_letter]
path = "out/dead_letter.jsonl"

[stages.events]
type = "replay"
path = {fixture:?}

[stages.hostile]
type = "transform"
inputs = ["events"]
plugin = {plugin:?}
config = {{ behave = "{behave}" }}
{extra}

[stages.out]
type = "file"
inputs = ["hostile"]
path = "out/out.jsonl"
"#,
        fixture = fixture("music_streaming_events.jsonl")
            .display()
            .to_string(),
        plugin = env!("TRIBUTARY_TEST_PLUGIN_HOSTILE"),
    );
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_plugin_that_loops_cannot_hang_a_run_nor_its_stop() {
    let dir = scratch("e2e_hostile_loop");
    // Its deadline ends the call; with `on_error = "fail"`, the run, with one error naming the stage,
    // the plugin and the setting.
    let file = hostile_pipeline(&dir, "loop", "timeout = \"1s\"\non_error = \"fail\"");
    let mut cmd = tributary();
    cmd.current_dir(&dir).arg("run").arg(&file);
    let started = std::time::Instant::now();
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        stderr.contains("hostile") && stderr.contains("did not return from `apply` within 1s"),
        "{stderr}"
    );

    // With a long deadline, the first Ctrl-C still stops it, about a second later.
    let file = hostile_pipeline(&dir, "loop", "timeout = \"10m\"");
    let mut child = tributary()
        .current_dir(&dir)
        .arg("run")
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopping = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        assert!(
            stopping.elapsed() < std::time::Duration::from_secs(20),
            "the run did not stop after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("interrupted in `apply` by the stop signal"),
        "{stderr}"
    );
}

#[test]
fn a_plugin_that_multiplies_rows_without_bound_is_stopped() {
    let dir = scratch("e2e_hostile_explode");
    // The batch is dead-lettered with the cause (`on_error` defaults to dead-letter); nothing reaches
    // the output, and the host's memory stays bounded.
    let file = hostile_pipeline(&dir, "explode", "");
    let (_, stderr) = run_pipeline(&dir, &file);
    assert!(
        stderr.contains("more than `max_rows_per_record` (100) allows"),
        "{stderr}"
    );
    let dead = read_jsonl(&dir.join("out/dead_letter.jsonl"));
    assert_eq!(dead.len(), 299);
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("5980000 output rows for 299 input rows"));
    assert_eq!(
        std::fs::read_to_string(dir.join("out/out.jsonl")).unwrap(),
        ""
    );
}

#[test]
fn plugin_outputs_that_collide_are_config_errors_with_their_place() {
    let dir = scratch("e2e_output_names");
    // `average` writes `avg` and `count`: a window keyed by `count` would lose its key.
    let text = default_pipeline_replaying(&fixture("music_streaming_events.jsonl")).replace(
        "key = \"genre\"\nwindow = { kind = \"global\" }",
        "key = \"count\"\nwindow = { kind = \"global\" }",
    );
    std::fs::write(dir.join("pipeline.toml"), &text).unwrap();
    let sub = dir.join("transform");
    std::fs::create_dir_all(&sub).unwrap();
    let file = hostile_pipeline(&sub, "rename", "");
    for (path, expected) in [
        (
            dir.join("pipeline.toml"),
            "the plugin's output `count` would overwrite the stage's own `count` field",
        ),
        (file, ""),
    ] {
        let mut cmd = tributary();
        cmd.current_dir(path.parent().unwrap())
            .arg("validate")
            .arg(&path);
        let (code, _, stderr) = run(cmd);
        if expected.is_empty() {
            // A transform may write any name it likes, `window_start` included.
            assert_eq!(code, 0, "{stderr}");
            continue;
        }
        assert_eq!(code, 2, "{stderr}");
        let line = text[..text.find("plugin = \"average\"").unwrap()]
            .lines()
            .count()
            + 1;
        assert!(
            stderr.contains(&format!("pipeline.toml:{line}:10: error:")),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn a_plugin_that_fails_dead_letters_its_batch_and_is_restarted() {
    let dir = scratch("e2e_hostile_panic");
    // `on_error` defaults to dead-letter: the run goes on and every record is in the dead-letter file,
    // with the cause; the warning comes once, the count at the end.
    let file = hostile_pipeline(&dir, "panic", "");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "type = \"replay\"\n",
        "type = \"replay\"\nbatch_size = 100\n",
    );
    std::fs::write(&file, text).unwrap();
    let (_, stderr) = run_pipeline(&dir, &file);
    let dead = read_jsonl(&dir.join("out/dead_letter.jsonl"));
    assert_eq!(dead.len(), 299, "{stderr}");
    assert!(dead.iter().all(|d| d["stage"] == "hostile"
        && d["reason"].as_str().unwrap().starts_with("plugin failed: ")
        && d["reason"]
            .as_str()
            .unwrap()
            .contains("in `apply`: it panicked")));
    assert_eq!(
        stderr
            .matches("were dead-lettered and the plugin restarted")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("the plugin failed on 3 batches in all"),
        "{stderr}"
    );
    // A stage that set aside everything says so, with its reasons; `--strict` makes it an error.
    assert!(
        stderr.contains(
            "warning: stage `hostile` set aside every record it received (299): plugin failed (299)"
        ),
        "{stderr}"
    );
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["run", "--strict"]).arg(&file);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 1, "{stderr}");

    // `on_error = "fail"` stops the run at the first failure.
    let file = hostile_pipeline(&dir, "panic", "on_error = \"fail\"");
    let mut cmd = tributary();
    cmd.current_dir(&dir).arg("run").arg(&file);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 1, "{stderr}");
    // The panic's own message, handed over by the SDK's panic hook, not a backtrace.
    assert!(
        stderr.contains("in `apply`: it panicked: hostile plugin panicked on purpose (at "),
        "{stderr}"
    );
    assert!(!stderr.contains("wasm backtrace"), "{stderr}");
}

/// ABI 0.3 on a real plugin (`plugins/reshape`) at scale: 100,000 records on 3 partitions, decoded in
/// parallel, renamed (`genre` → `style`), projected (`year` dropped), and one total row added at the end
/// of input. Every record comes out once, in order, with exactly the fields it should have.
#[test]
fn a_transform_renames_and_drops_fields_and_adds_rows_at_the_end() {
    let dir = scratch("e2e_reshape");
    let generated = dir.join("generated.jsonl");
    generate(&generated, Some(100_000), 3);
    let records = capture(&generated);
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"[stages.events]
type = "replay"
path = {generated:?}

[stages.reshape]
type = "transform"
inputs = ["events"]
plugin = {plugin:?}
config = {{ drop = "year" }}

[stages.out]
type = "file"
inputs = ["reshape"]
path = "out/out.jsonl"
"#,
            generated = generated.display().to_string(),
            plugin = env!("TRIBUTARY_TEST_PLUGIN_RESHAPE"),
        ),
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir)
        .args(["validate", "--explain"])
        .arg(&file);
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("  writes:  style (string), streams (float)\n  drops:   genre, year\n"),
        "{stdout}"
    );

    run_pipeline(&dir, &file);
    let rows = read_jsonl(&dir.join("out/out.jsonl"));
    assert_eq!(rows.len(), records.len() + 1);
    let mut total = 0.0;
    // The file sink writes records in the order they came: the capture's, whatever the decoding.
    for (row, (_, record)) in rows.iter().zip(&records) {
        let mut expected = record.as_object().unwrap().clone();
        let genre = expected.remove("genre").unwrap();
        expected.remove("year");
        expected.insert("style".into(), genre);
        total += record["streams"].as_f64().unwrap();
        let fields: std::collections::BTreeSet<&String> = row.as_object().unwrap().keys().collect();
        let wanted: std::collections::BTreeSet<&String> = expected.keys().collect();
        assert_eq!(fields, wanted, "{row}");
        for (k, v) in &expected {
            assert_eq!(&row[k], v, "{k} of {row}");
        }
    }
    // The row `finish` added holds the plugin's outputs only.
    let last = rows.last().unwrap();
    assert_eq!(last.as_object().unwrap().len(), 2, "{last}");
    assert_eq!(last["style"], "(total)");
    assert!(
        close(last["streams"].as_f64().unwrap(), total),
        "{last} {total}"
    );
}

#[test]
fn a_transform_that_drops_what_it_writes_or_fails_at_the_end_says_so() {
    let dir = scratch("e2e_transform_contract");
    // Writing and dropping one field is a config error, with its place.
    let file = hostile_pipeline(&dir, "drop-own", "");
    let mut cmd = tributary();
    cmd.current_dir(&dir).arg("validate").arg(&file);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pipeline.toml:11:10: error:"), "{stderr}");
    assert!(
        stderr.contains("the plugin both writes and drops `streams`"),
        "{stderr}"
    );

    // A panic in `finish`: by default the run goes on, and the dead-letter output and the run say what
    // was lost; with `on_error = "fail"` the run fails.
    let file = hostile_pipeline(&dir, "panic-at-end", "");
    let (_, stderr) = run_pipeline(&dir, &file);
    assert_eq!(read_jsonl(&dir.join("out/out.jsonl")).len(), 299);
    let dead = read_jsonl(&dir.join("out/dead_letter.jsonl"));
    assert_eq!(dead.len(), 1, "{stderr}");
    // No record to keep: where and why only.
    assert_eq!(dead[0]["at"], serde_json::json!({ "call": "finish" }));
    assert!(dead[0].get("line").is_none() && dead[0].get("record").is_none());
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("plugin failed at the end of input, so the rows it held back are lost")
            && reason.contains(
                "in `finish`: it panicked: hostile plugin panicked at the end on purpose"
            ),
        "{reason}"
    );
    assert!(
        stderr.contains("warning: stage `hostile`: plugin failed at the end"),
        "{stderr}"
    );
    let file = hostile_pipeline(&dir, "panic-at-end", "on_error = \"fail\"");
    let mut cmd = tributary();
    cmd.current_dir(&dir).arg("run").arg(&file);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("at the end of input"), "{stderr}");
}

/// `on_error = "dead-letter"` in window stages, at scale, with a real plugin (`plugins/fragile`): 100,000
/// records on 3 partitions and two records that make `add` panic. The batches holding them go to the
/// dead-letter output and every other record counts exactly once (the open windows are rebuilt); a
/// global window whose `finish` panics for one key names that window in the dead-letter output and
/// emits the others.
#[test]
fn a_window_plugin_that_fails_dead_letters_its_batch_and_the_windows_are_rebuilt() {
    let dir = scratch("e2e_window_on_error");
    let generated = dir.join("generated.jsonl");
    generate(&generated, Some(100_000), 3);
    // Two poison records: copies of records 30,000 and 70,000 with a track of their own.
    let mut lines: Vec<Json> = read_jsonl(&generated);
    for (n, at) in [30_000usize, 70_000].into_iter().enumerate() {
        let mut poison = lines[at].clone();
        let mut value: Json = serde_json::from_str(poison["value"].as_str().unwrap()).unwrap();
        value["track"] = "Poison Pill".into();
        poison["value"] = value.to_string().into();
        poison["offset"] = (900_000 + n as i64).into();
        lines.insert(at + 1 + n, poison);
    }
    let capture_file = dir.join("poisoned.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&capture_file, text).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"[dead_letter]
path = "out/dead_letter.jsonl"

[stages.events]
type = "replay"
path = {capture:?}

[stages.minutes]
type = "window"
inputs = ["events"]
plugin = {plugin:?}
config = {{ panic_on_track = "Poison Pill" }}
key = "genre"
window = {{ kind = "tumbling", size = "1m" }}
max_delay = "5s"

[stages.totals]
type = "window"
inputs = ["events"]
plugin = {plugin:?}
config = {{ panic_on_key = "Tango" }}
key = "genre"
window = {{ kind = "global" }}

[stages.minutes_out]
type = "file"
inputs = ["minutes"]
path = "out/minutes.jsonl"

[stages.totals_out]
type = "file"
inputs = ["totals"]
path = "out/totals.jsonl"
"#,
            capture = capture_file.display().to_string(),
            plugin = env!("TRIBUTARY_TEST_PLUGIN_FRAGILE"),
        ),
    )
    .unwrap();
    let (_, stderr) = run_pipeline(&dir, &file);
    assert!(
        stderr.contains("warning: stage `minutes`: plugin `")
            && stderr.contains("in `add`: it panicked: fragile plugin met track Poison Pill"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the plugin failed 2 times in all"),
        "{stderr}"
    );

    let dead = read_jsonl(&dir.join("out/dead_letter.jsonl"));
    let from = |stage: &'static str| dead.iter().filter(move |d| d["stage"] == stage);
    let set_aside: std::collections::BTreeSet<(i64, i64)> = from("minutes")
        .map(|d| {
            assert!(
                d["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("plugin failed: plugin `"),
                "{d}"
            );
            (
                d["partition"].as_i64().unwrap(),
                d["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(set_aside.contains(&(lines[30_001]["partition"].as_i64().unwrap(), 900_000)));
    assert!(set_aside.contains(&(lines[70_002]["partition"].as_i64().unwrap(), 900_001)));
    assert!(
        set_aside.len() < 10_000,
        "two batches, not the run: {}",
        set_aside.len()
    );

    // Every record but those set aside, once: per minute and genre, sum and count.
    let mut minutes: BTreeMap<(i64, String), (f64, i64)> = BTreeMap::new();
    let mut totals: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for line in &lines {
        let value: Json = serde_json::from_str(line["value"].as_str().unwrap()).unwrap();
        let genre = value["genre"].as_str().unwrap().to_string();
        let streams = value["streams"].as_f64().unwrap();
        let t = totals.entry(genre.clone()).or_default();
        t.0 += streams;
        t.1 += 1;
        let at = (
            line["partition"].as_i64().unwrap(),
            line["offset"].as_i64().unwrap(),
        );
        if set_aside.contains(&at) {
            continue;
        }
        let ts = line["timestamp"].as_i64().unwrap();
        let m = minutes
            .entry((ts - ts.rem_euclid(60_000), genre))
            .or_default();
        m.0 += streams;
        m.1 += 1;
    }
    let rows = read_jsonl(&dir.join("out/minutes.jsonl"));
    assert_eq!(rows.len(), minutes.len());
    for row in &rows {
        let key = (
            parse_rfc3339(row["window_start"].as_str().unwrap()),
            row["genre"].as_str().unwrap().to_string(),
        );
        let (sum, count) = minutes[&key];
        assert_eq!(row["count"].as_i64().unwrap(), count, "{key:?}");
        assert!(close(row["sum"].as_f64().unwrap(), sum), "{key:?}: {row}");
    }

    // The global window: every genre but the one whose result failed, over every record.
    let lost: Vec<&Json> = from("totals").collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        lost[0]["at"],
        serde_json::json!({ "window": null, "key": "Tango" })
    );
    assert!(lost[0].get("line").is_none() && lost[0].get("record").is_none());
    assert!(
        lost[0]["reason"]
            .as_str()
            .unwrap()
            .contains("this window's result is lost: plugin `"),
        "{}",
        lost[0]
    );
    let rows = read_jsonl(&dir.join("out/totals.jsonl"));
    assert_eq!(rows.len(), totals.len() - 1);
    for row in &rows {
        let genre = row["genre"].as_str().unwrap();
        assert_ne!(genre, "Tango");
        let (sum, count) = totals[genre];
        assert_eq!(row["count"].as_i64().unwrap(), count, "{genre}");
        assert!(close(row["sum"].as_f64().unwrap(), sum), "{genre}: {row}");
    }
}

/// The README's plugin examples are the SDK's rustdoc examples, which `scripts/test` runs: the lines a
/// reader sees there (not the hidden `# ` ones), in order.
#[test]
fn the_readme_plugin_examples_are_the_sdks_tested_ones() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (kind, file) in [
        ("transform", "plugins/sdk/src/transform.rs"),
        ("aggregate", "plugins/sdk/src/aggregate.rs"),
    ] {
        let start = format!("<!-- {kind}-example-start -->\n```rust\n");
        let shown = &readme[readme.find(&start).unwrap() + start.len()..];
        let shown = &shown[..shown.find("```\n").unwrap()];
        let source = std::fs::read_to_string(repo().join(file)).unwrap();
        let doc: String = source
            .lines()
            .skip_while(|l| l.trim() != "/// ```")
            .skip(1)
            .take_while(|l| l.trim() != "/// ```")
            .map(|l| l.trim_start().strip_prefix("///").unwrap())
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .filter(|l| !l.starts_with("# "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!doc.is_empty(), "{file} has no example");
        assert_eq!(
            shown, doc,
            "the README's {kind} example differs from {file}'s"
        );
    }
}

/// A chart table with fields of the other kind and a missing one: `validate` names each field and
/// says what to do, pointing at the first.
#[test]
fn validate_explains_a_chart_config() {
    let dir = scratch("e2e_validate_chart");
    std::fs::write(
        dir.join("bad.toml"),
        r#"[stages.events]
type = "replay"
path = "events.jsonl"

[stages.trend]
type = "chart"
inputs = ["events"]
kind = "line"
label = "genre"
y = "avg"
top = 12
svg = "out/trend.svg"
"#,
    )
    .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(&dir).args(["validate", "bad.toml"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 2, "{stderr}");
    let expected = "bad.toml:9:9: error: stage `trend`: `label` is for `kind = \"bar\"`; a line chart takes `x`, `y` and `series`; \
        a line chart needs `x`, the field along the horizontal axis, like `x = \"window_start\"`; \
        `top` can be at most 10 for a line chart, one colour per series; use several charts for more";
    assert!(
        stderr.contains(expected),
        "missing `{expected}` in:\n{stderr}"
    );
}

/// The README's plugin guide, run as written (with `~/plugins` and `/path/to/tributary` replaced, and
/// cargo building into the plugins' target directory, where the SDK's dependencies are built): a new
/// aggregate crate builds, its unit test passes, `describe` shows its fields, and `plugin test` runs it in
/// a pipeline on the fixture with the averages computed here.
#[test]
fn the_readme_plugin_guide_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let guide = readme
        .split("<!-- guide-start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- guide-end -->").next())
        .expect("README.md has a guide between <!-- guide-start --> and <!-- guide-end -->");
    let plugins = scratch("plugin-guide");
    let shared_target = repo().join("target/plugins");
    let commands: Vec<String> = guide
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .map(|l| {
            // Cargo builds into the plugins' target directory here (see below), not the crate's.
            l.replace("~/plugins", &plugins.display().to_string())
                .replace("/path/to/tributary", &repo().display().to_string())
                .replace(
                    " target/wasm32-unknown-unknown/",
                    &format!(" {}/wasm32-unknown-unknown/", shared_target.display()),
                )
        })
        .collect();
    assert!(
        commands.len() >= 5,
        "the guide has {} commands",
        commands.len()
    );
    let mut cwd = std::env::current_dir().unwrap();
    let mut outputs = Vec::new();
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        if words[0] == "cd" {
            cwd = cwd.join(words[1]);
            continue;
        }
        let mut cmd = match words[0] {
            "tributary" => tributary(),
            "cargo" => {
                let mut cmd = std::process::Command::new("cargo");
                // This test's cargo settings are not the plugin's; its dependencies are built once in
                // the plugins' target directory.
                for (key, _) in std::env::vars() {
                    if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC_")
                    {
                        cmd.env_remove(key);
                    }
                }
                cmd.env("CARGO_TARGET_DIR", &shared_target);
                cmd
            }
            other => {
                panic!("the guide runs `{other}`; this test knows `tributary`, `cargo` and `cd`")
            }
        };
        cmd.current_dir(&cwd).args(&words[1..]);
        let (code, out, err) = run(cmd);
        assert_eq!(
            code, 0,
            "`{command}` failed\nstdout:\n{out}\nstderr:\n{err}"
        );
        outputs.push((command.clone(), out, err));
    }
    let output = |verb: &str| {
        outputs
            .iter()
            .find(|(c, _, _)| c.starts_with(&format!("tributary plugin {verb}")))
            .map(|(_, out, _)| out.clone())
            .unwrap_or_else(|| panic!("the guide runs no `tributary plugin {verb}`"))
    };
    let tested = outputs
        .iter()
        .find(|(c, _, _)| c.starts_with("cargo test"))
        .map(|(_, out, _)| out.clone())
        .expect("the guide runs the plugin's unit tests");
    assert!(tested.contains("test result: ok. 1 passed"), "{tested}");

    let described = output("describe");
    for line in [
        "kind    aggregate",
        "streams              float",
        "avg                  float",
        "count                int",
    ] {
        assert!(described.contains(line), "no `{line}` in:\n{described}");
    }

    let mut expected: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for (_, p) in capture(&fixture("music_streaming_events.jsonl")) {
        let e = expected
            .entry(p["genre"].as_str().unwrap().to_string())
            .or_default();
        e.0 += p["streams"].as_f64().unwrap();
        e.1 += 1;
    }
    let table = output("test");
    let mut got: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        // window_start, window_end (empty: one global window), genre, avg, count
        assert_eq!(cells.len(), 5, "{line}");
        got.insert(
            cells[2].to_string(),
            (cells[3].parse().unwrap(), cells[4].parse().unwrap()),
        );
    }
    assert_eq!(got.len(), expected.len(), "one row per genre:\n{table}");
    for (genre, (sum, count)) in expected {
        let (avg, n) = got[&genre];
        assert_eq!(n, count, "{genre}");
        assert!(
            close(avg, sum / count as f64),
            "{genre}: {avg} against {}",
            sum / count as f64
        );
    }
}

#[test]
fn plugin_describe_and_test_explain_their_mistakes() {
    // A transform given aggregate options, a config without `=`, a plugin refusing its config.
    for (args, says) in [
        (
            vec![
                "plugin",
                "test",
                "scale",
                "--config",
                "field=streams",
                "--config",
                "factor=2",
                "--input",
                "x.jsonl",
                "--key",
                "genre",
            ],
            "`--window` and `--key` are for aggregates",
        ),
        (
            vec!["plugin", "describe", "average", "--config", "field"],
            "is not `KEY=VALUE`",
        ),
        (
            vec!["plugin", "describe", "average"],
            "missing config key `field`",
        ),
        (
            vec!["plugin", "new", "Bad Name", "--kind", "aggregate"],
            "cannot name a plugin crate",
        ),
    ] {
        let mut cmd = tributary();
        cmd.args(&args);
        let (code, _, err) = run(cmd);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(says), "{args:?}: no `{says}` in:\n{err}");
    }
}

/// `plugin new --kind transform` makes a filter that builds, passes its own unit test, and keeps
/// exactly the fixture's records whose `streams` reach `min`, scaled by `factor`.
#[test]
fn a_new_transform_plugin_builds_and_filters() {
    let dir = scratch("plugin-new-transform");
    let shared_target = repo().join("target/plugins");
    let mut cmd = tributary();
    cmd.args(["plugin", "new", "my_filter", "--kind", "transform", "--dir"])
        .arg(&dir);
    let (code, _, err) = run(cmd);
    assert_eq!(code, 0, "{err}");
    for args in [&["build", "--release"][..], &["test-native"][..]] {
        let mut cmd = std::process::Command::new("cargo");
        for (key, _) in std::env::vars() {
            if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("CARGO_TARGET_DIR", &shared_target)
            .current_dir(dir.join("my_filter"))
            .args(args);
        let (code, out, err) = run(cmd);
        assert_eq!(code, 0, "cargo {args:?}\n{out}\n{err}");
    }
    let wasm = shared_target.join("wasm32-unknown-unknown/release/my_filter.wasm");
    let mut cmd = tributary();
    cmd.args(["plugin", "test"])
        .arg(&wasm)
        .args([
            "--config",
            "field=streams",
            "--config",
            "min=5",
            "--config",
            "factor=10",
        ])
        .arg("--input")
        .arg(fixture("music_streaming_events.jsonl"))
        .args(["--rows", "1000"]);
    let (code, table, err) = run(cmd);
    assert_eq!(code, 0, "{err}");
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with('|'))
        .unwrap()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect();
    let col = header.iter().position(|h| *h == "streams").unwrap();
    let got: Vec<f64> = table
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .nth(col)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    let want: Vec<f64> = capture(&fixture("music_streaming_events.jsonl"))
        .iter()
        .map(|(_, p)| p["streams"].as_f64().unwrap())
        .filter(|s| *s >= 5.0)
        .map(|s| s * 10.0)
        .collect();
    assert!(
        !want.is_empty() && want.len() < 299,
        "the filter should keep some records"
    );
    assert_eq!(got.len(), want.len(), "{table}");
    for (g, w) in got.iter().zip(&want) {
        assert!(close(*g, *w), "{g} against {w}");
    }
}

/// Compiled plugins go where the README says: `plugins/` under `$TRIBUTARY_CACHE_DIR`, else under
/// `$XDG_CACHE_HOME/tributary`; a second run uses the entries and adds none.
#[test]
fn compiled_plugins_are_cached_where_the_readme_says() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme
        .contains("`plugins/` under `$TRIBUTARY_CACHE_DIR`, else `$XDG_CACHE_HOME/tributary`"));
    let dir = scratch("plugin-cache");
    let entries = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for (var, base) in [
        ("TRIBUTARY_CACHE_DIR", dir.join("explicit")),
        ("XDG_CACHE_HOME", dir.join("xdg")),
    ] {
        for _ in 0..2 {
            let mut cmd = tributary();
            cmd.args(["plugin", "describe", "average", "--config", "field=streams"])
                .env_remove("TRIBUTARY_CACHE_DIR")
                .env(var, &base);
            let (code, _, err) = run(cmd);
            assert_eq!(code, 0, "{err}");
        }
        let cache = if var == "XDG_CACHE_HOME" {
            base.join("tributary/plugins")
        } else {
            base.join("plugins")
        };
        let found = entries(&cache);
        assert_eq!(found.len(), 1, "{var}: {found:?} in {}", cache.display());
        assert!(found[0].ends_with(".cwasm"), "{found:?}");
    }
}

/// A plugin's log lines reach stderr one line each, named by stage, and a plugin logging per record
/// is cut to 20 lines a second with a count of what was dropped; the run itself is unchanged.
#[test]
fn plugin_log_lines_are_shown_by_stage_and_rate_limited() {
    let dir = scratch("plugin-log");
    let file = hostile_pipeline(&dir, "log", "");
    let (_, err) = run_pipeline(&dir, &file);
    let shown: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("stage `hostile`: info: streams is "))
        .collect();
    assert_eq!(shown.len(), 20, "one second's worth:\n{err}");
    assert!(
        shown.iter().all(|l| l.ends_with(" second line")),
        "{shown:?}"
    );
    // The 279 lines over the rate are counted when the next line is shown; in a run shorter than a
    // second no line follows, so the count may not show, but nothing else may be logged.
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("stage `hostile`: "))
            .count(),
        shown.len()
            + err
                .lines()
                .filter(|l| l.contains("log line(s) dropped"))
                .count(),
        "{err}"
    );
    assert_eq!(read_jsonl(&dir.join("out/out.jsonl")).len(), 299);
}
