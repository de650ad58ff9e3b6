//! The Kafka source and the `produce` / `record` commands against a real broker (`common::service`
//! starts one when TRIBUTARY_TEST_KAFKA is unset; these tests never skip). Every test uses its own
//! topics and groups, so they run in parallel and against a broker that outlives them. `merge` holds the
//! tests at scale of the partition merge: live equals replay however the partitions arrive.

#[path = "../common/mod.rs"]
mod common;
mod durability;
mod group;
mod merge;
mod recovery;

use common::{generate, read_jsonl, repo, run, scratch, service, tributary, tumbling_pipeline};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A name of this run's own (topics, groups): `test-NAME-PID-NANOS`, the PID this test process's, which
/// is how [`kafka_brokers`] knows the topics of earlier runs.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{name}-{}-{nanos}", std::process::id())
}

/// The broker of the suite (`common::service`). The first call also deletes the topics that earlier
/// runs of the suite left on it: each test uses topics of its own (exchange and changelog topics
/// included, named after its group) on a broker that outlives the run, so they only piled up, about
/// 330 MB a run (40 GB had filled a disk).
fn kafka_brokers() -> String {
    static PRUNED: std::sync::Once = std::sync::Once::new();
    let brokers = service("kafka");
    PRUNED.call_once(|| {
        if let Err(e) = delete_topics_of_ended_runs(&brokers) {
            eprintln!("warning: the topics of earlier test runs stay on {brokers}: {e}");
        }
    });
    brokers
}

/// Deletes the topics named by [`unique`] (the part before a `.`, for exchange and changelog topics)
/// whose process is gone. A run still going (its process alive) keeps its topics.
fn delete_topics_of_ended_runs(brokers: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("log_level", "0");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let ended: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|name| run_of(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()))
        .collect();
    if ended.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let names: Vec<&str> = ended.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = tributary::kafka::block_on(admin.delete_topics(&names, &options))
        .map_err(|e| e.to_string())?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "kafka tests: topics of earlier runs deleted from {brokers}: {}{}",
        names.len() - failed,
        if failed > 0 {
            format!(" ({failed} could not be)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The PID in a name [`unique`] made, if `name` is one (or begins with one before a `.`).
fn run_of(name: &str) -> Option<u32> {
    let base = name.split('.').next()?.strip_prefix("test-")?;
    let mut parts = base.rsplitn(3, '-');
    let (nanos, pid, _) = (parts.next()?, parts.next()?, parts.next()?);
    nanos.parse::<u32>().ok()?;
    pid.parse().ok()
}

#[test]
fn the_topics_of_a_test_run_are_told_by_their_names() {
    let pid = std::process::id();
    assert_eq!(run_of(&unique("topic-a")), Some(pid));
    assert_eq!(run_of(&format!("{}.w.exchange", unique("g"))), Some(pid));
    for other in [
        "music_streaming_events",
        "test-x",
        "test-x-12",
        "x-12-34",
        "bench-1-2-3",
        "test-a-b-c",
    ] {
        assert_eq!(run_of(other), None, "{other}");
    }
}

/// The fixture's 299 records spread over 3 partitions (partition = index % 3): same keys, payloads and
/// timestamps, still in timestamp order.
fn capture3(dir: &Path) -> PathBuf {
    let out = dir.join("capture3.jsonl");
    generate(&out, None, 3);
    out
}

fn produce(brokers: &str, topic: &str, file: &Path, extra: &[&str]) -> String {
    let mut cmd = tributary();
    cmd.args(["produce", "--brokers", brokers, "--topic", topic])
        .arg(file)
        .args(extra);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "produce failed\nstdout:\n{out}\nstderr:\n{err}");
    err
}

fn pipeline_with(source: &str) -> String {
    common::default_pipeline_with_source(source)
}

fn kafka_source(brokers: &str, topic: &str, group: &str, extra: &str) -> String {
    format!("type = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\n{extra}\n")
}

/// Writes `text` as `dir/name/pipeline.toml`; outputs land under that directory.
/// Writes `dir/name/pipeline.toml`. The runs of one test share a checkpoint directory beside theirs,
/// as the runs of one pipeline do (each run writes its outputs apart, to compare them).
fn write_pipeline(dir: &Path, name: &str, text: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join("pipeline.toml");
    let text = if text.contains("[checkpoint]") {
        text.to_string()
    } else {
        format!("{text}\n[checkpoint]\ndir = \"../checkpoints\"\n")
    };
    std::fs::write(&file, text).unwrap();
    file
}

struct RunOutput {
    stdout: String,
    stderr: String,
    per_minute: Vec<Value>,
    dead: Vec<Value>,
}

fn run_in(dir: &Path, name: &str, text: &str) -> RunOutput {
    let file = write_pipeline(dir, name, text);
    let (stdout, stderr) = common::run_pipeline(file.parent().unwrap(), &file);
    outputs(file.parent().unwrap(), stdout, stderr)
}

fn outputs(d: &Path, stdout: String, stderr: String) -> RunOutput {
    let per_minute = read_jsonl(&d.join("out/avg_streams_per_genre_1m.jsonl"));
    let dead = read_jsonl(&d.join("out/dead_letter.jsonl"));
    RunOutput {
        stdout,
        stderr,
        per_minute,
        dead,
    }
}

/// The default pipeline replaying the fixture: the results every live run must match.
fn replay_baseline(dir: &Path) -> RunOutput {
    let fixture = common::fixture("music_streaming_events.jsonl");
    let r = run_in(dir, "replay", &common::default_pipeline_replaying(&fixture));
    assert!(
        r.stdout.contains("| Jazz/Big Band"),
        "baseline table:\n{}",
        r.stdout
    );
    assert!(r.per_minute.len() > 20, "baseline has per-minute rows");
    r
}

/// (window_start, genre) → count, summed over runs.
fn counts(runs: &[&[Value]]) -> BTreeMap<(String, String), i64> {
    let mut m = BTreeMap::new();
    for rows in runs {
        for r in *rows {
            let key = (
                r["window_start"].as_str().unwrap().to_string(),
                r["genre"].as_str().unwrap().to_string(),
            );
            *m.entry(key).or_default() += r["count"].as_i64().unwrap();
        }
    }
    m
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// Waits for a child (killing it after `limit`), returning exit code, stdout and stderr. The outputs are
/// small, so reading them after the exit cannot block the child.
fn wait_with_timeout(child: &mut Child, limit: Duration) -> (i32, String, String) {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    (code, out, err)
}

/// Runs a pipeline until its per-minute file has a row, lets it go on for `settle`, stops it with SIGTERM
/// and returns its stderr, asserting a clean stop.
fn stop_after_first_window(file: &Path, settle: Duration) -> String {
    let rows = file
        .parent()
        .unwrap()
        .join("out/avg_streams_per_genre_1m.jsonl");
    let mut child = spawn_pipeline(file);
    let deadline = Instant::now() + Duration::from_secs(30);
    while line_count(&rows) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended by itself"
        );
        assert!(
            Instant::now() < deadline,
            "no window was emitted within 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(settle);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _, err) = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert_eq!(code, 0, "stopped run failed:\n{err}");
    assert!(err.contains("stopped before the end of input"), "{err}");
    err
}

/// Splits a capture into `head.jsonl` (its first `n` lines) and `tail.jsonl` (the rest) in `dir`.
fn split_capture(dir: &Path, capture: &Path, n: usize) -> (PathBuf, PathBuf) {
    let lines: Vec<String> = std::fs::read_to_string(capture)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let (head, tail) = (dir.join("head.jsonl"), dir.join("tail.jsonl"));
    std::fs::write(&head, lines[..n].join("\n") + "\n").unwrap();
    std::fs::write(&tail, lines[n..].join("\n") + "\n").unwrap();
    (head, tail)
}

fn spawn_pipeline(file: &Path) -> Child {
    let mut cmd = tributary();
    cmd.current_dir(file.parent().unwrap())
        .arg("run")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn tributary run")
}

/// (1) The default pipeline fed from a 3-partition topic gives exactly the replay's results: the same
/// console table, the same per-window rows (bit for bit), and no late record.
#[test]
fn live_run_equals_replay() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_live_equals_replay");
    let capture = capture3(&dir);
    let topic = unique("events");
    let said = produce(&brokers, &topic, &capture, &["--partitions", "3"]);
    assert!(
        said.contains("produced 299 records") && said.contains("3 partitions, created"),
        "{said}"
    );
    let replay = replay_baseline(&dir);
    let source = kafka_source(
        &brokers,
        &topic,
        &unique("group"),
        "start = \"earliest\"\nidle_timeout = \"2s\"",
    );
    let live = run_in(&dir, "live", &pipeline_with(&source));
    assert!(
        live.stderr.contains(&format!(
            "reads `{topic}` from kafka at `{brokers}` (3 partitions"
        )),
        "{}",
        live.stderr
    );
    assert_eq!(
        live.stdout, replay.stdout,
        "console table differs from the replay's"
    );
    assert_eq!(
        live.per_minute, replay.per_minute,
        "per-window rows differ from the replay's"
    );
    assert!(
        live.dead.is_empty(),
        "no record may be late or dead: {:?}",
        live.dead
    );
}

/// (2) `record` writes back exactly what `produce` loaded: partitions, offsets, timestamps, keys, values.
/// Lines `produce` cannot read are skipped with their line numbers, and the rest is loaded.
#[test]
fn record_round_trip() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_record_round_trip");
    let capture = capture3(&dir);
    let topic = unique("roundtrip");
    let mut with_bad = Vec::new();
    for (i, line) in std::fs::read(&capture)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
    {
        match i {
            1 => with_bad.extend_from_slice(b"not json\n"),
            150 => with_bad.extend_from_slice(b"{\"topic\":\"t\",\"value\":\"\xff\"}\n"),
            _ => {}
        }
        with_bad.extend_from_slice(line);
    }
    let bad = dir.join("with_bad_lines.jsonl");
    std::fs::write(&bad, with_bad).unwrap();
    let err = produce(&brokers, &topic, &bad, &["--partitions", "3"]);
    assert!(err.contains("produced 299 records"), "{err}");
    assert!(err.contains("2 unreadable line(s) skipped"), "{err}");
    assert!(err.contains("with_bad_lines.jsonl:2: "), "{err}");
    assert!(
        err.contains("with_bad_lines.jsonl:152: line is not valid UTF-8"),
        "{err}"
    );
    let recorded = dir.join("recorded.jsonl");
    let mut cmd = tributary();
    cmd.args([
        "record",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--max-records",
        "299",
        "--duration",
        "60s",
        "--out",
    ])
    .arg(&recorded);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "record failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("recorded 299 records"), "{err}");
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("topic");
                r
            })
            .collect()
    };
    let produced = read_jsonl(&capture);
    let got = read_jsonl(&recorded);
    assert!(got.iter().all(|r| r["topic"] == topic.as_str()));
    assert_eq!(
        strip(got),
        strip(produced),
        "the capture differs from what was produced"
    );
}

/// (3) With no broker on the configured port, the run replays the fallback capture within the connect
/// timeout plus a few seconds, says so, and prints the replay's table.
#[test]
fn falls_back_to_the_capture_without_a_broker() {
    let dir = scratch("kafka_fallback");
    let replay = replay_baseline(&dir);
    let port = free_port();
    let fixture = common::fixture("music_streaming_events.jsonl");
    let extra = format!(
        "idle_timeout = \"2s\"\nfallback = {{ replay = {:?}, connect_timeout = \"2s\" }}",
        fixture.display().to_string()
    );
    let source = kafka_source(
        &format!("127.0.0.1:{port}"),
        "music_streaming_events",
        "tributary",
        &extra,
    );
    let started = Instant::now();
    let live = run_in(&dir, "fallback", &pipeline_with(&source));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 6), "fallback took {took:?}");
    assert!(
        live.stderr
            .contains(&format!("no kafka broker answered at `127.0.0.1:{port}`"))
            && live
                .stderr
                .contains(&format!("replaying the capture `{}`", fixture.display())),
        "{}",
        live.stderr
    );
    assert_eq!(live.stdout, replay.stdout);
    assert_eq!(live.per_minute, replay.per_minute);
}

/// (4a) A run ended by `max_records` commits exactly what it read: the next run of the group reads the
/// rest, and the per-window counts of both runs add up to the replay's (a lost or doubled record shows).
#[test]
fn max_records_then_restart_neither_loses_nor_doubles() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_max_records_restart");
    let capture = capture3(&dir);
    let topic = unique("restart");
    let group = unique("group");
    produce(&brokers, &topic, &capture, &["--partitions", "3"]);
    let replay = replay_baseline(&dir);
    let first = run_in(
        &dir,
        "first",
        &pipeline_with(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"\nmax_records = 120",
        )),
    );
    let second = run_in(
        &dir,
        "second",
        &pipeline_with(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"\nidle_timeout = \"2s\"",
        )),
    );
    let in_first: i64 = counts(&[&first.per_minute]).values().sum();
    let in_second: i64 = counts(&[&second.per_minute]).values().sum();
    assert_eq!(
        (in_first, in_second),
        (120, 179),
        "the first run reads 120 records, the second the rest"
    );
    assert_eq!(
        counts(&[&first.per_minute, &second.per_minute]),
        counts(&[&replay.per_minute])
    );
}

/// (4b) A run stopped by SIGTERM half-way emits the windows the watermark closed (equal to the replay's)
/// and saves the open ones in its last checkpoint; a restart resumes from it and completes them:
/// upserting its rows over the first run's gives exactly the replay's results.
#[test]
fn sigterm_then_restart_recomputes_open_windows() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_sigterm_restart");
    let capture = capture3(&dir);
    let (head, tail) = split_capture(&dir, &capture, 150);
    let topic = unique("sigterm");
    let group = unique("group");
    produce(&brokers, &topic, &head, &["--partitions", "3"]);
    let replay = replay_baseline(&dir);

    // Runs until stopped; rows appear as the watermark closes minutes.
    let file = write_pipeline(
        &dir,
        "first",
        &pipeline_with(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"",
        )),
    );
    let err = stop_after_first_window(&file, Duration::from_secs(1));
    let first = outputs(file.parent().unwrap(), String::new(), err);
    assert!(!first.per_minute.is_empty());
    for row in &first.per_minute {
        assert!(
            replay.per_minute.contains(row),
            "an emitted window differs from the replay's: {row}"
        );
    }

    produce(&brokers, &topic, &tail, &[]);
    let second = run_in(
        &dir,
        "second",
        &pipeline_with(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"\nidle_timeout = \"2s\"",
        )),
    );
    // Upsert by (window, genre): the second run's rows replace the first's.
    let mut merged: BTreeMap<(String, String), Value> = BTreeMap::new();
    for row in first.per_minute.iter().chain(&second.per_minute) {
        let key = (row["window_start"].to_string(), row["genre"].to_string());
        merged.insert(key, row.clone());
    }
    let expected: BTreeMap<(String, String), Value> = replay
        .per_minute
        .iter()
        .map(|row| {
            (
                (row["window_start"].to_string(), row["genre"].to_string()),
                row.clone(),
            )
        })
        .collect();
    assert_eq!(
        merged, expected,
        "first run upserted with the restart differs from the replay"
    );
    assert_eq!(
        second.stdout, replay.stdout,
        "the restart's table differs from the replay's"
    );
}

/// (5) Fed live at 30× speed, a 1-minute tumbling window emits rows as the watermark passes, while the
/// producer is still producing; the final rows equal the replay's.
#[test]
fn windows_are_emitted_while_records_arrive() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_live_windows");
    let capture = capture3(&dir);
    let topic = unique("paced");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    produce(&brokers, &topic, &empty, &["--partitions", "3"]);
    let replay = replay_baseline(&dir);

    let source = kafka_source(
        &brokers,
        &topic,
        &unique("group"),
        "start = \"earliest\"\nidle_timeout = \"4s\"",
    );
    let file = write_pipeline(&dir, "live", &pipeline_with(&source));
    let rows = file
        .parent()
        .unwrap()
        .join("out/avg_streams_per_genre_1m.jsonl");
    let mut pipeline = spawn_pipeline(&file);
    // The capture spans about 295 s: 10 s at 30×, a minute closing every 2 s.
    let mut producer = tributary()
        .args([
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--speed",
            "30",
        ])
        .arg(&capture)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_live = None;
    while seen_live.is_none() && Instant::now() < deadline {
        let n = line_count(&rows);
        if n > 0 {
            seen_live = Some((
                n,
                producer.try_wait().unwrap().is_none(),
                pipeline.try_wait().unwrap().is_none(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (p_code, _, p_err) = wait_with_timeout(&mut producer, Duration::from_secs(60));
    assert_eq!(p_code, 0, "paced produce failed:\n{p_err}");
    let (code, stdout, stderr) = wait_with_timeout(&mut pipeline, Duration::from_secs(60));
    assert_eq!(code, 0, "live run failed:\n{stderr}");
    let (n, producing, running) = seen_live.expect("no window row appeared within 30s");
    assert!(producing && running, "first {n} rows appeared only after the input ended (producing {producing}, running {running})");
    let live = outputs(file.parent().unwrap(), stdout, stderr);
    assert_eq!(live.per_minute, replay.per_minute);
    assert_eq!(live.stdout, replay.stdout);
}

/// (window_start, genre) of a per-window row.
fn window_key(row: &Value) -> (String, String) {
    (row["window_start"].to_string(), row["genre"].to_string())
}

/// (4c) Stopped by SIGTERM after some windows were emitted, then restarted with `start = "committed"`:
/// the stop wrote a last checkpoint (the open windows' state and the position after the records they
/// hold), so the restart resumes from it. It reads only what the checkpoint does not cover (no re-read
/// of emitted windows' records), emits no window twice, and the rows of both runs together hold
/// exactly one row per (window, genre), equal to the replay's: an appending sink counts nothing twice.
#[test]
fn sigterm_then_restart_does_not_emit_a_window_twice() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_sigterm_no_double_window");
    let capture = capture3(&dir);
    // 150 records span minutes 0 and 1 and half of minute 2; with batches of 50 the last batch holds
    // records of minute 1 (emitted once minute 2's records pass its end) and of minute 2 (still open).
    let (head, tail) = split_capture(&dir, &capture, 150);
    let topic = unique("resume");
    let group = unique("group");
    produce(&brokers, &topic, &head, &["--partitions", "3"]);
    let fixture = common::fixture("music_streaming_events.jsonl");
    let replay = run_in(
        &dir,
        "replay",
        &tumbling_pipeline(&format!(
            "type = \"replay\"\npath = {:?}\n",
            fixture.display().to_string()
        )),
    );
    assert!(replay.per_minute.len() > 20, "baseline has per-minute rows");

    let file = write_pipeline(
        &dir,
        "first",
        &tumbling_pipeline(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"\nbatch_size = 50\ncommit_interval = \"1s\"",
        )),
    );
    // Past a periodic commit, so the stop is not the first commit.
    let err = stop_after_first_window(&file, Duration::from_secs(2));
    let first = outputs(file.parent().unwrap(), String::new(), err);
    let first_windows: std::collections::BTreeSet<String> = first
        .per_minute
        .iter()
        .map(|r| r["window_start"].to_string())
        .collect();
    assert!(
        first_windows.len() >= 2,
        "the first run emits minutes 0 and 1: {first_windows:?}"
    );

    produce(&brokers, &topic, &tail, &[]);
    let second = run_in(
        &dir,
        "second",
        &tumbling_pipeline(&kafka_source(
            &brokers,
            &topic,
            &group,
            "start = \"committed\"\nbatch_size = 50\nidle_timeout = \"2s\"",
        )),
    );
    let again: Vec<&Value> = second
        .per_minute
        .iter()
        .filter(|r| first_windows.contains(&r["window_start"].to_string()))
        .collect();
    assert!(
        again.is_empty(),
        "the restart emits windows the first run emitted:\n{again:#?}\nfirst run:\n{:#?}",
        first.per_minute
    );
    let mut seen = BTreeMap::new();
    for row in first.per_minute.iter().chain(&second.per_minute) {
        if let Some(before) = seen.insert(window_key(row), row.clone()) {
            panic!("(window, genre) emitted twice: {before} and {row}");
        }
    }
    let expected: BTreeMap<(String, String), Value> = replay
        .per_minute
        .iter()
        .map(|r| (window_key(r), r.clone()))
        .collect();
    assert_eq!(
        seen, expected,
        "the rows of both runs differ from the replay's"
    );
    assert!(
        second.dead.is_empty(),
        "records read again are not dead-lettered: {:?}",
        second.dead
    );
    assert!(
        second.stderr.contains("resuming from checkpoint") && !second.stderr.contains("read again"),
        "{}",
        second.stderr
    );
    // The first run read the whole head; records the partition merge still held at the stop are all
    // the restart reads of it again.
    let read = stage_in(&second.stderr, "events");
    assert!(
        (149..170).contains(&read),
        "the restart reads the tail and at most a few held records of the head, not {read}:\n{}",
        second.stderr
    );
}

/// Records a stage took in, from the run summary.
fn stage_in(stderr: &str, stage: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{stage} (")))
        .unwrap_or_else(|| panic!("no summary line for `{stage}`:\n{stderr}"));
    line.split_whitespace()
        .skip_while(|w| *w != "in")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in `{line}`"))
}

/// A broker that answers, but not in the protocol configured (TLS or SASL against a plaintext
/// listener), is reported as such, not as "no broker": the warning names the handshake that failed and
/// the settings to check. The run falls back as soon as it knows, not after `connect_timeout` (60 s here,
/// for a loaded broker that is slow to drop the handshake).
#[test]
fn a_tls_or_sasl_mismatch_says_so() {
    let brokers = kafka_brokers();
    let dir = scratch("kafka_security_mismatch");
    let fixture = common::fixture("music_streaming_events.jsonl");
    // librdkafka words a refused TLS handshake either way, depending on when the broker drops it.
    let ssl: &[&str] = &["SSL handshake failed", "in state SSL_HANDSHAKE"];
    for (protocol, says) in [("SSL", ssl), ("SASL_PLAINTEXT", &["SASL"][..])] {
        let extra = format!(
            "idle_timeout = \"2s\"\nproperties = {{ \"security.protocol\" = \"{protocol}\", \"sasl.mechanism\" = \"PLAIN\", \"sasl.username\" = \"u\", \"sasl.password\" = \"p\" }}\nfallback = {{ replay = {:?}, connect_timeout = \"60s\" }}",
            fixture.display().to_string()
        );
        let source = kafka_source(&brokers, "music_streaming_events", "tributary", &extra);
        let run = run_in(&dir, protocol, &pipeline_with(&source));
        assert!(
            run.stderr
                .contains(&format!("cannot connect to kafka at `{brokers}`"))
                && says.iter().any(|s| run.stderr.contains(s))
                && run.stderr.contains("check `security.protocol`"),
            "{protocol}:\n{}",
            run.stderr
        );
    }
}

/// A broker of this test's own (`scripts/services` with its own directory and ports), so that stopping
/// it disturbs no other test. Stopped when dropped.
struct OwnBroker {
    dir: PathBuf,
    brokers: String,
}

impl OwnBroker {
    fn start(dir: &Path) -> OwnBroker {
        let mut broker = OwnBroker {
            dir: dir.join("services"),
            brokers: String::new(),
        };
        broker.services("start");
        let env = std::process::Command::new(repo().join("scripts/services"))
            .arg("env")
            .env("TRIBUTARY_SERVICES_DIR", &broker.dir)
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&env.stdout).into_owned();
        let brokers = env
            .lines()
            .find_map(|l| {
                l.strip_prefix("export TRIBUTARY_TEST_KAFKA=")
                    .map(|v| v.trim_matches(['\'', '"']).to_string())
            })
            .unwrap_or_else(|| {
                panic!("scripts/services env printed no TRIBUTARY_TEST_KAFKA:\n{env}")
            });
        broker.brokers = brokers;
        broker
    }

    /// Once `rows` has a line (a window was emitted, within `within`) and while `producer` still
    /// runs, stops the broker for `down` and starts it again.
    fn outage_after_first_row(
        &self,
        rows: &Path,
        producer: &mut Child,
        within: Duration,
        down: Duration,
    ) {
        let deadline = Instant::now() + within;
        while line_count(rows) == 0 {
            assert!(
                Instant::now() < deadline,
                "no window was emitted within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            producer.try_wait().unwrap().is_none(),
            "the producer finished before the outage; make it slower"
        );
        self.services("stop");
        std::thread::sleep(down);
        self.services("start");
    }

    fn services(&self, cmd: &str) {
        let status = std::process::Command::new(repo().join("scripts/services"))
            .args([cmd, "kafka"])
            .env("TRIBUTARY_SERVICES_DIR", &self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "scripts/services {cmd} kafka failed");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("scripts/services"))
            .args(["stop", "kafka"])
            .env("TRIBUTARY_SERVICES_DIR", &self.dir)
            .status();
    }
}
