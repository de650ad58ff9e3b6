//! `tributary run --watch` end to end: plugins swapped in a running pipeline (a paced replay), with
//! the results compared to a run without the swap.

use crate::common::*;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Records in the capture (the scale users run, over three partitions) and the pace of the watched
/// runs: about 20 s (the generator spaces records about 1 s apart), long enough for a swap on a loaded
/// machine, which the first stats line starts.
const RECORDS: usize = 100_000;
const SPEED: u32 = 5_000;

/// The bundled `sum` plugin's module, as the host's build made it.
fn sum_wasm() -> PathBuf {
    repo().join("target/plugins/wasm32-unknown-unknown/release/sum.wasm")
}

/// A generated capture over three partitions in `dir`, and a pipeline that sums `streams` per genre
/// and minute with the plugin file `agg.wasm` (a copy of the bundled `sum`), replayed at `speed`.
fn sum_pipeline(dir: &Path, speed: u32) -> PathBuf {
    let capture = dir.join("capture.jsonl");
    if !capture.exists() {
        generate(&capture, Some(RECORDS), 3);
    }
    std::fs::copy(sum_wasm(), dir.join("agg.wasm")).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"[dead_letter]
path = "out/dead_letter.jsonl"

[stages.events]
type = "replay"
path = "capture.jsonl"
speed = {speed}

[stages.sums]
type = "window"
inputs = ["events"]
plugin = "agg.wasm"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "tumbling", size = "1m" }}

[stages.out]
type = "file"
inputs = ["sums"]
path = "out/sums.jsonl"
"#
        ),
    )
    .unwrap();
    file
}

/// Writes a file whole, as an editor or `cp` to a temporary name and `mv` would: the watcher never
/// sees it half written.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The rows a run wrote, sorted, so runs batched differently compare equal.
fn rows(dir: &Path) -> Vec<Json> {
    let mut rows = read_jsonl(&dir.join("out/sums.jsonl"));
    rows.sort_by_key(|r| r.to_string());
    rows
}

/// The results of the pipeline without `--watch` and without pacing.
fn reference(name: &str) -> Vec<Json> {
    let dir = scratch(name);
    let file = sum_pipeline(&dir, 0);
    run_pipeline(&dir, &file);
    rows(&dir)
}

/// A `tributary run --watch` going on, its stderr read line by line on a thread.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: String,
}

impl Watched {
    fn start(dir: &Path, file: &Path) -> Watched {
        let mut child = tributary()
            .current_dir(dir)
            .arg("run")
            .arg(file)
            .args(["--watch", "--stats-interval", "1s"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            stderr: String::new(),
        }
    }

    /// Reads stderr up to the first line `want` accepts, and returns it; fails the test when the run
    /// ends or a minute passes first.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                    if line.starts_with("tributary: finished") {
                        panic!("the run ended before {what}:\n{}", self.stderr);
                    }
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within a minute:\n{}", self.stderr),
            }
        }
    }

    /// Waits for the run to end, asserting success; returns all of its stderr.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the run did not end:\n{}", self.stderr);
                }
            }
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end:\n{}", self.stderr);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "the run failed:\n{}", self.stderr);
        self.stderr
    }
}

/// The summed `count`s of a run's rows: every record once.
fn counted(rows: &[Json]) -> u64 {
    rows.iter().map(|r| r["count"].as_u64().unwrap()).sum()
}

#[test]
fn a_window_plugin_swapped_mid_run_keeps_its_state_and_every_record() {
    let expected = reference("hotswap_keep_reference");
    assert_eq!(counted(&expected), RECORDS as u64);
    let dir = scratch("hotswap_keep");
    let file = sum_pipeline(&dir, SPEED);
    let mut run = Watched::start(&dir, &file);
    run.wait_for("the watch line", |l| {
        l.starts_with("tributary: watching") && l.contains("1 plugin file")
    });
    // A stats line: records are flowing, so windows are open when the swap comes.
    run.wait_for("a stats line", |l| l.starts_with("tributary: 1s:"));
    // The ABI 0.1 build of `sum`: the same accumulator bytes, a different file.
    replace(
        &dir.join("agg.wasm"),
        &std::fs::read(repo().join("tests/fixtures/sum-abi-0.1.wasm")).unwrap(),
    );
    let swapped = run.wait_for("the swap", |l| l.contains("swapped in"));
    assert_eq!(
        swapped,
        "tributary: stage `sums`: swapped in plugin `agg.wasm` (new file); state kept"
    );
    let stderr = run.finish();
    assert!(!stderr.contains("error"), "{stderr}");
    let got = rows(&dir);
    assert_eq!(
        counted(&got),
        RECORDS as u64,
        "a record lost or counted twice"
    );
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
}

#[test]
fn an_invalid_change_is_reported_and_the_run_goes_on_unchanged() {
    let expected = reference("hotswap_invalid_reference");
    let dir = scratch("hotswap_invalid");
    let file = sum_pipeline(&dir, SPEED);
    let mut run = Watched::start(&dir, &file);
    run.wait_for("the watch line", |l| l.starts_with("tributary: watching"));
    run.wait_for("a stats line", |l| l.starts_with("tributary: 1s:"));

    // A plugin file that is not one: the build of the new version fails, pointing at its stage.
    replace(&dir.join("agg.wasm"), b"not a plugin");
    run.wait_for("the problem report", |l| {
        l.contains("changed, but the new version has problems; the run goes on unchanged")
    });
    let at = run.wait_for("the problem", |l| l.contains("error:"));
    assert!(
        at.contains("pipeline.toml:12:10: error: stage `sums`: `agg.wasm` is not a valid plugin"),
        "{at}"
    );

    // A syntax error in the pipeline file, with its place.
    let text = std::fs::read_to_string(&file).unwrap();
    replace(
        &file,
        text.replace("key = \"genre\"", "key = = \"genre\"")
            .as_bytes(),
    );
    run.wait_for("the problem report", |l| {
        l.contains("changed, but the new version has problems; the run goes on unchanged")
    });
    let at = run.wait_for("the problem", |l| l.contains("error:"));
    assert!(
        at.contains("pipeline.toml:14:7: error: invalid TOML"),
        "{at}"
    );

    // A change only a restart can apply.
    replace(
        &file,
        text.replace(&format!("speed = {SPEED}"), "speed = 1")
            .as_bytes(),
    );
    let restart = run.wait_for("the restart notice", |l| l.contains("needs a restart"));
    assert!(
        restart.contains("(stage `events`: `speed` changed); the run goes on unchanged"),
        "{restart}"
    );

    let stderr = run.finish();
    assert!(!stderr.contains("swapped in"), "{stderr}");
    assert_eq!(rows(&dir), expected);
}

#[test]
fn a_plugin_that_cannot_load_the_state_starts_empty_and_says_so() {
    let dir = scratch("hotswap_reset");
    let file = sum_pipeline(&dir, SPEED);
    let mut run = Watched::start(&dir, &file);
    run.wait_for("the watch line", |l| l.starts_with("tributary: watching"));
    run.wait_for("a stats line", |l| l.starts_with("tributary: 1s:"));
    // `max` keeps an `Option<f64>`, not `sum`'s sum and count: its `load` refuses their bytes.
    let text = std::fs::read_to_string(&file).unwrap();
    replace(
        &file,
        text.replace("plugin = \"agg.wasm\"", "plugin = \"max\"")
            .as_bytes(),
    );
    let swapped = run.wait_for("the swap", |l| l.contains("swapped in"));
    assert!(
        swapped.starts_with(
            "tributary: stage `sums`: swapped in plugin `max`; state reset (cannot restore the window state: the plugin refused a saved accumulator: "
        ) && swapped.ends_with("): the windows open at the swap start again empty"),
        "{swapped}"
    );
    run.finish();
    // Windows before the swap were summed, those after it are maxima.
    let rows = read_jsonl(&dir.join("out/sums.jsonl"));
    let first = rows.first().unwrap();
    let last = rows.last().unwrap();
    assert!(
        first.get("sum").is_some() && first.get("max").is_none(),
        "{first}"
    );
    assert!(
        last.get("max").is_some() && last.get("sum").is_none(),
        "{last}"
    );
}

#[test]
fn a_transform_config_changed_mid_run_applies_from_the_next_batch() {
    let dir = scratch("hotswap_transform");
    let file = sum_pipeline(&dir, SPEED);
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "[stages.sums]\ntype = \"window\"\ninputs = [\"events\"]",
        "[stages.scaled]\ntype = \"transform\"\ninputs = [\"events\"]\nplugin = \"scale\"\nconfig = { field = \"streams\", factor = 1.0 }\n\n[stages.sums]\ntype = \"window\"\ninputs = [\"scaled\"]",
    );
    assert!(text.contains("plugin = \"scale\""));
    replace(&file, text.as_bytes());
    let mut run = Watched::start(&dir, &file);
    run.wait_for("the watch line", |l| l.starts_with("tributary: watching"));
    run.wait_for("a stats line", |l| l.starts_with("tributary: 1s:"));
    replace(
        &file,
        text.replace("factor = 1.0", "factor = 0.0").as_bytes(),
    );
    let swapped = run.wait_for("the swap", |l| l.contains("swapped in"));
    assert_eq!(
        swapped,
        "tributary: stage `scaled`: swapped in plugin `scale` (`config` changed)"
    );
    run.finish();
    let rows = read_jsonl(&dir.join("out/sums.jsonl"));
    assert_eq!(
        counted(&rows),
        RECORDS as u64,
        "a record lost or counted twice"
    );
    // Windows summed before the swap have their streams, those after it zeros.
    let sum = |r: &Json| r["sum"].as_f64().unwrap();
    assert!(sum(rows.first().unwrap()) > 0.0);
    assert_eq!(sum(rows.last().unwrap()), 0.0);
}
