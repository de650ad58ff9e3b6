//! Shared test harness: run the real `tributary` binary, find the repo, start the services tests need.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// A fresh scratch directory under the target directory, removed and recreated.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target").join("test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `fixtures/generate.py --records N --partitions P` to `out`: a deterministic capture at the
/// scale users run (`records` of `None` is the generator's default, the 299-record fixture).
pub fn generate(out: &Path, records: Option<usize>, partitions: usize) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("fixtures/generate.py"));
    if let Some(n) = records {
        cmd.args(["--records", &n.to_string()]);
    }
    let status = cmd
        .args(["--partitions", &partitions.to_string(), "--out"])
        .arg(out)
        .status()
        .expect("run python3 fixtures/generate.py");
    assert!(status.success(), "fixtures/generate.py failed");
}

/// The `tributary` binary built for this test run.
pub fn tributary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, returning exit code, stdout and stderr.
pub fn run(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run tributary");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `tributary run FILE` in `dir`, asserting success.
pub fn run_pipeline(dir: &Path, file: &Path) -> (String, String) {
    let mut cmd = tributary();
    cmd.current_dir(dir).arg("run").arg(file);
    let (code, out, err) = run(cmd);
    assert_eq!(
        code,
        0,
        "tributary run {} failed\nstdout:\n{out}\nstderr:\n{err}",
        file.display()
    );
    (out, err)
}

/// Reads a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

static SERVICES: Mutex<()> = Mutex::new(());

/// The address of a running service (`kafka` → `host:port`, `mongodb` → a URI). Uses the environment
/// variable `scripts/test` exports; without it, starts the service with `scripts/services` (never skips).
pub fn service(name: &str) -> String {
    let var = match name {
        "kafka" => "TRIBUTARY_TEST_KAFKA",
        "mongodb" => "TRIBUTARY_TEST_MONGODB",
        other => panic!("unknown service {other}"),
    };
    if let Ok(v) = std::env::var(var) {
        return v;
    }
    let _guard = SERVICES.lock().unwrap_or_else(|p| p.into_inner());
    let script = repo().join("scripts/services");
    let status = Command::new(&script)
        .args(["start", name])
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "scripts/services start {name} failed");
    let env = Command::new(&script)
        .arg("env")
        .output()
        .expect("run scripts/services env");
    let env = String::from_utf8_lossy(&env.stdout);
    env.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("export {var}="))
                .map(|v| v.trim_matches(['\'', '"']).to_string())
        })
        .unwrap_or_else(|| panic!("scripts/services env printed no {var}:\n{env}"))
}

/// The repository's `pipeline.toml` with the body of its `[stages.events]` table replaced by `source`
/// (the default reads Kafka with a capture as fallback; tests pin the source they mean).
pub fn default_pipeline_with_source(source: &str) -> String {
    let text = std::fs::read_to_string(repo().join("pipeline.toml")).unwrap();
    let start = text
        .find("[stages.events]")
        .expect("pipeline.toml has an `events` stage");
    let end = start
        + text[start + 1..]
            .find("\n[")
            .map_or(text.len() - start, |i| i + 2);
    format!(
        "{}[stages.events]\n{source}\n{}",
        &text[..start],
        &text[end..]
    )
}

/// The repository's `pipeline.toml` replaying `capture` (an absolute path) as its `events` stage.
pub fn default_pipeline_replaying(capture: &Path) -> String {
    default_pipeline_with_source(&format!(
        "type = \"replay\"\npath = {:?}\n",
        capture.display().to_string()
    ))
}

/// A pipeline with only the 1-minute tumbling window (no global window, which would hold every batch
/// until the end of input and so commit nothing before it), writing its rows to a file.
pub fn tumbling_pipeline(source: &str) -> String {
    format!(
        r#"[dead_letter]
path = "out/dead_letter.jsonl"

[stages.events]
{source}

[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = {{ field = "streams", factor = 1e8 }}

[stages.avg_by_genre_1m]
type = "window"
inputs = ["scaled"]
plugin = "average"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "tumbling", size = "1m" }}
max_delay = "5s"

[stages.per_minute]
type = "file"
inputs = ["avg_by_genre_1m"]
path = "out/avg_streams_per_genre_1m.jsonl"
"#
    )
}
