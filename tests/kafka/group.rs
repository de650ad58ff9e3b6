//! `mode = "group"`: several processes share a topic's partitions through Kafka's consumer group, at
//! the scale users run (100,000 records over 6 partitions, produced live while the members read), with
//! members that join and members that are killed mid-run.
//!
//! Every record carries a sequence number (`seq`), so the members' outputs together can be checked
//! record by record against the capture: nothing lost, and nothing read twice where the group promises
//! it (partitions moved by a rebalance are committed where their old owner stopped).

use super::{unique, wait_with_timeout, OwnBroker};
use crate::common::{generate, scratch, tributary};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const RECORDS: usize = 100_000;
const PARTITIONS: usize = 6;
/// The capture spans about 100,000 s of event time: produced in about 20 s.
const SPEED: &str = "5000";

/// The generated capture over 6 partitions, with `seq` (the record's index) added to each payload.
fn numbered_capture(dir: &Path) -> PathBuf {
    let plain = dir.join("plain.jsonl");
    generate(&plain, Some(RECORDS), PARTITIONS);
    let mut out = String::new();
    for (i, line) in std::fs::read_to_string(&plain).unwrap().lines().enumerate() {
        let mut rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut value: serde_json::Value =
            serde_json::from_str(rec["value"].as_str().unwrap()).unwrap();
        value["seq"] = i.into();
        rec["value"] = value.to_string().into();
        out.push_str(&rec.to_string());
        out.push('\n');
    }
    let file = dir.join("numbered.jsonl");
    std::fs::write(&file, out).unwrap();
    file
}

/// Kafka in group mode → scale → file; with `windows`, also 1-minute and whole-input averages per
/// genre (the bundled job's windows), each into a file. In `dir/name`.
fn member_pipeline(
    dir: &Path,
    name: &str,
    (brokers, topic, group): (&str, &str, &str),
    windows: bool,
) -> PathBuf {
    let source = format!(
        r#"[stages.events]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
mode = "group"
idle_timeout = "3s"
# A killed member's partitions go to the others after 6 s rather than librdkafka's 45 s.
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
"#
    );
    write_pipeline(dir, name, &source, windows)
}

fn write_pipeline(dir: &Path, name: &str, source: &str, windows: bool) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join("pipeline.toml");
    let mut text = format!(
        r#"[dead_letter]
path = "out/dead_letter.jsonl"

{source}
[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = {{ field = "streams", factor = 1e8 }}

[stages.records]
type = "file"
inputs = ["scaled"]
path = "out/records.jsonl"
"#
    );
    if windows {
        text.push_str(WINDOWS);
    }
    std::fs::write(&file, text).unwrap();
    file
}

const WINDOWS: &str = r#"
[stages.avg_1m]
type = "window"
inputs = ["scaled"]
plugin = "average"
config = { field = "streams" }
key = "genre"
window = { kind = "tumbling", size = "1m" }
max_delay = "5s"

[stages.avg_1m_file]
type = "file"
inputs = ["avg_1m"]
path = "out/avg_1m.jsonl"

[stages.avg]
type = "window"
inputs = ["scaled"]
plugin = "average"
config = { field = "streams" }
key = "genre"
window = { kind = "global" }

[stages.avg_file]
type = "file"
inputs = ["avg"]
path = "out/avg.jsonl"
"#;

fn spawn(file: &Path) -> Child {
    tributary()
        .current_dir(file.parent().unwrap())
        .arg("run")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary run")
}

/// `tributary produce` pacing the capture by its timestamps, into a new 6-partition topic.
fn spawn_producer(brokers: &str, topic: &str, capture: &Path) -> Child {
    tributary()
        .args(["produce", "--brokers", brokers, "--topic", topic])
        .args(["--partitions", &PARTITIONS.to_string(), "--speed", SPEED])
        .arg(capture)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary produce")
}

/// The `seq` of every record a member wrote, in the order written.
fn seqs(file: &Path) -> Vec<u64> {
    let path = file.parent().unwrap().join("out/records.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["streams"].as_f64().map(|s| s >= 1e8), Some(true), "{l}");
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

/// How many times each record of the capture was written, over all members.
fn tally(files: &[&Path]) -> Vec<u32> {
    let mut seen = vec![0u32; RECORDS];
    for f in files {
        for s in seqs(f) {
            seen[s as usize] += 1;
        }
    }
    seen
}

fn wait_ok(child: &mut Child, what: &str) -> String {
    let (code, _, err) = wait_with_timeout(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{what} failed:\n{err}");
    err
}

/// Sleeps until `at` after `start`.
fn at(start: Instant, secs: u64) {
    std::thread::sleep(
        (start + Duration::from_secs(secs)).saturating_duration_since(Instant::now()),
    );
}

/// Canonical JSON of every row of `out/NAME.jsonl` over the runs in `files`.
fn rows(files: &[PathBuf], name: &str) -> Vec<String> {
    let mut all = Vec::new();
    for f in files {
        let path = f
            .parent()
            .unwrap()
            .join("out")
            .join(format!("{name}.jsonl"));
        for v in crate::common::read_jsonl(&path) {
            all.push(v.to_string());
        }
    }
    all
}

/// Up to five processes per test: one such test at a time on a 2-core machine.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates `topic` with 6 partitions and no record.
fn create_topic(brokers: &str, topic: &str, dir: &Path) {
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    wait_ok(
        &mut spawn_producer(brokers, topic, &empty),
        "create the topic",
    );
}

/// What happens to the members during a run, by seconds after the producer starts.
enum Scenario {
    /// Three members from the start to the end.
    Three,
    /// A fourth member joins at 8 s.
    FourthJoins,
    /// The second member is killed (SIGKILL) at 7 s and started again at 14 s.
    SecondKilled,
    /// Three members wait on the topic, empty, for 4 s before the capture is produced: every source
    /// partition starts at its end, idle, and stops being so when its first record arrives, at a
    /// moment that differs by partition and by member.
    Waiting,
}

/// Runs the windowed member pipeline in a group while the capture is produced live, as `scenario`
/// says, and checks the members' outputs together against one process replaying the capture: every
/// record written, and every 1-minute and whole-input average per genre, field for field.
fn group_run(name: &str, scenario: Scenario) {
    let _turn = turn();
    let brokers = super::kafka_brokers();
    let dir = scratch(name);
    let capture = numbered_capture(&dir);
    let source = format!(
        "[stages.events]\ntype = \"replay\"\npath = \"{}\"\n",
        capture.display()
    );
    let single = write_pipeline(&dir, "single", &source, true);
    crate::common::run_pipeline(single.parent().unwrap(), &single);

    let (topic, group) = (unique("group"), unique("g"));
    let files: Vec<PathBuf> = (1..=4)
        .map(|i| member_pipeline(&dir, &format!("m{i}"), (&brokers, &topic, &group), true))
        .collect();
    let waiting = matches!(scenario, Scenario::Waiting);
    if waiting {
        create_topic(&brokers, &topic, &dir);
        for f in &files {
            // Not to end before the first record comes.
            let text = std::fs::read_to_string(f).unwrap();
            std::fs::write(
                f,
                text.replace("idle_timeout = \"3s\"", "idle_timeout = \"8s\""),
            )
            .unwrap();
        }
    }
    let mut producer = (!waiting).then(|| spawn_producer(&brokers, &topic, &capture));
    let start = Instant::now();
    let mut members: Vec<Child> = files[..3].iter().map(|f| spawn(f)).collect();
    let mut killed_after = 0;
    match scenario {
        Scenario::Three => {}
        Scenario::Waiting => {
            at(start, 4);
            producer = Some(spawn_producer(&brokers, &topic, &capture));
        }
        Scenario::FourthJoins => {
            at(start, 8);
            members.push(spawn(&files[3]));
        }
        Scenario::SecondKilled => {
            at(start, 7);
            killed_after = seqs(&files[1]).len();
            members[1].kill().unwrap();
            members[1].wait().unwrap();
            at(start, 14);
            members[1] = spawn(&files[1]);
        }
    }
    wait_ok(producer.as_mut().expect("started"), "produce");
    let logs: Vec<String> = members
        .iter_mut()
        .enumerate()
        .map(|(i, m)| wait_ok(m, &format!("member {}", i + 1)))
        .collect();
    let all = logs.join("\n");
    let used = &files[..members.len()];

    // Records: each written once, except after a kill: what the killed member wrote and had not
    // committed is written again by the member that took its partitions.
    let seen = tally(&used.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(missing, 0, "records lost\n{all}");
    match scenario {
        Scenario::SecondKilled => {
            assert!(killed_after > 0, "member 2 wrote nothing before it was killed:\n{all}");
            assert!(twice < RECORDS / 4, "{twice} records written twice\n{all}");
        }
        _ => assert_eq!(twice, 0, "records written twice (a rebalance must commit where a partition's handling ended)\n{all}"),
    }
    for (i, (f, log)) in used.iter().zip(&logs).enumerate() {
        assert!(!seqs(f).is_empty(), "member {} read nothing:\n{log}", i + 1);
        assert!(log.contains(&format!("joins group `{group}`")), "{log}");
        assert!(
            log.contains(&format!("group `{group}` assigned partition")),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "group `{group}.avg_1m` assigned exchange partitions"
            )),
            "{log}"
        );
    }
    match scenario {
        Scenario::Three | Scenario::Waiting => {}
        Scenario::FourthJoins => {
            assert!(
                all.contains(&format!("group `{group}` moved partition")),
                "the newcomer took source partitions from a member:\n{all}"
            );
            // Window state moves with exchange partitions: saved by the member that gives one up,
            // loaded by the newcomer.
            assert!(
                all.contains("moved (snapshotted for their next owner) exchange partitions")
                    && logs[3].contains("(from its snapshot at offset"),
                "exchange partitions moved with their state:\n{all}"
            );
        }
        Scenario::SecondKilled => assert!(
            logs.iter()
                .any(|l| l.matches(&format!("group `{group}` assigned")).count() > 1),
            "the killed member's partitions went to another member:\n{all}"
        ),
    }

    // Windows: a result emitted after an exchange partition's last snapshot is emitted again by its
    // next owner, equal; as sets, the members' results are the single process's.
    for name in ["avg_1m", "avg"] {
        let want: std::collections::BTreeSet<String> = rows(std::slice::from_ref(&single), name)
            .into_iter()
            .collect();
        let got_rows = rows(used, name);
        let got: std::collections::BTreeSet<String> = got_rows.iter().cloned().collect();
        assert!(
            want.len() > if name == "avg" { 70 } else { 10_000 },
            "{name}: {}",
            want.len()
        );
        let missing: Vec<&String> = want.difference(&got).take(3).collect();
        let extra: Vec<&String> = got.difference(&want).take(3).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: {} results missing, e.g. {missing:?}; {} not in the single run, e.g. {extra:?}\n{all}",
            want.difference(&got).count(),
            got.difference(&want).count()
        );
    }
}

/// Three members share the partitions: together they write every record once and compute the single
/// process's windows.
#[test]
fn three_members_of_a_group_compute_what_one_process_computes() {
    group_run("kafka_group_three", Scenario::Three);
}

/// Members that wait on an empty topic before records are produced to it: a source partition found
/// idle at its end lets go only the records of other partitions that were in the topic by then.
#[test]
fn members_waiting_on_an_empty_topic_compute_what_one_process_computes() {
    group_run("kafka_group_waiting", Scenario::Waiting);
}

/// A fourth member joins mid-run: the rebalance moves partitions (source and exchange) to it, and
/// nothing is lost or read twice.
#[test]
fn a_member_joining_mid_run_changes_no_result() {
    group_run("kafka_group_join", Scenario::FourthJoins);
}

/// A member killed mid-run (SIGKILL: no goodbye, no commit) and started again: the group gives its
/// partitions to the others, who read again what it had not committed, and its exchange partitions'
/// windows are restored from their snapshots. Nothing is lost, no window counts a record twice.
#[test]
fn a_member_killed_mid_run_and_started_again_changes_no_result() {
    group_run("kafka_group_kill", Scenario::SecondKilled);
}

/// What group mode cannot do is refused before anything runs, at the line that asks for it; window
/// stages get an exchange, which `validate --explain` shows.
#[test]
fn group_mode_validates_its_window_stages_and_refuses_a_fallback() {
    let dir = scratch("kafka_group_validate");
    let validate = |file: &Path, explain: bool| {
        let mut cmd = tributary();
        cmd.arg("validate").arg(file);
        if explain {
            cmd.arg("--explain");
        }
        crate::common::run(cmd)
    };
    let file = member_pipeline(&dir, "windowed", ("127.0.0.1:9", "t", "g"), true);
    let (code, out, err) = validate(&file, true);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("avg_1m.exchange (exchange)\n  inputs:  scaled")
            && out.contains("avg_1m (window)\n  inputs:  -\n  outputs: avg_1m_file"),
        "{out}"
    );

    let mut cmd = tributary();
    cmd.args(["run", "--watch"]).arg(&file);
    let (code, _, err) = crate::common::run(cmd);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`--watch` cannot swap the window stages of a consumer group (`avg_1m`"),
        "{err}"
    );

    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("topics = [\"t\"]", "topics = [\"t\", \"u\"]");
    std::fs::write(&file, &text).unwrap();
    let (code, _, err) = validate(&file, false);
    assert_ne!(code, 0, "{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with("topics ="))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("pipeline.toml:{line}:10")), "{err}");
    assert!(
        err.contains("window stage `avg_1m` reads this source") && err.contains("needs one topic"),
        "{err}"
    );

    let file = member_pipeline(&dir, "fallback", ("127.0.0.1:9", "t", "g"), false);
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "idle_timeout = \"3s\"",
        "idle_timeout = \"3s\"\nfallback = \"c.jsonl\"",
    );
    std::fs::write(&file, &text).unwrap();
    let (code, _, err) = validate(&file, false);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("`fallback` replays the whole capture in every process"),
        "{err}"
    );
}

/// The records `topic` holds, in total over its partitions.
fn topic_size(brokers: &str, topic: &str) -> u64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    (0..PARTITIONS as i32)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            (high - low) as u64
        })
        .sum()
}

/// A member whose exchange cannot reach the broker: the broker is stopped for 30 s mid-run, longer
/// than the member's `message.timeout.ms` (3 s). The run stops with an error, leaving the batches
/// that did not reach the exchange uncommitted; started again until it ends well, its runs' windows
/// together equal one process replaying what the topic holds, and no record was late.
#[test]
fn a_member_whose_exchange_fails_stops_and_is_restarted_without_a_difference() {
    let _turn = turn();
    let dir = scratch("kafka_group_outage");
    let broker = OwnBroker::start(&dir);
    let brokers = broker.brokers.clone();
    let capture = numbered_capture(&dir);
    let (topic, group) = (unique("outage"), unique("g"));
    create_topic(&brokers, &topic, &dir);
    let file = member_pipeline(&dir, "m", (&brokers, &topic, &group), true);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("idle_timeout = \"3s\"", "idle_timeout = \"8s\"")
        .replace(
            "\"heartbeat.interval.ms\" = \"1000\" }",
            "\"heartbeat.interval.ms\" = \"1000\", \"message.timeout.ms\" = \"3000\" }",
        );
    assert!(text.contains("message.timeout.ms"), "{text}");
    std::fs::write(&file, text).unwrap();
    let out = file.parent().unwrap().join("out");
    // Each run writes its files anew: keep them.
    let keep = |run: usize| {
        let to = dir.join(format!("run{run}"));
        std::fs::create_dir_all(&to).unwrap();
        for name in ["avg_1m", "avg", "dead_letter"] {
            let from = out.join(format!("{name}.jsonl"));
            if from.exists() {
                std::fs::copy(&from, to.join(format!("{name}.jsonl"))).unwrap();
            }
        }
        to
    };

    let mut member = spawn(&file);
    std::thread::sleep(Duration::from_secs(2));
    let mut producer = spawn_producer(&brokers, &topic, &capture);
    broker.outage_after_first_row(
        &out.join("avg_1m.jsonl"),
        &mut producer,
        Duration::from_secs(60),
        Duration::from_secs(30),
    );
    wait_ok(&mut producer, "produce");
    let (code, _, err) = wait_with_timeout(&mut member, Duration::from_secs(180));
    assert!(
        code != 0 && err.contains("were not delivered to the exchange topic"),
        "the first run did not stop on the failed exchange (exit {code}):\n{err}"
    );
    let mut runs = vec![keep(1)];
    let mut logs = vec![err];
    for run in 2..=4 {
        let (code, _, err) = wait_with_timeout(&mut spawn(&file), Duration::from_secs(180));
        runs.push(keep(run));
        logs.push(err);
        if code == 0 {
            break;
        }
        assert!(
            run < 4,
            "three runs after the outage failed:\n{}",
            logs.join("\n")
        );
    }
    let all = logs.join("\n");

    // The broker may write a producer's batch twice across its restart (see `merge`): compare with
    // what the topic holds.
    let size = topic_size(&brokers, &topic);
    assert!(size >= RECORDS as u64, "the topic holds {size} records");
    let recorded = dir.join("recorded.jsonl");
    let mut cmd = tributary();
    cmd.args(["record", "--brokers", &brokers, "--topic", &topic])
        .args([
            "--max-records",
            &size.to_string(),
            "--duration",
            "60s",
            "--out",
        ])
        .arg(&recorded);
    let (code, _, err) = crate::common::run(cmd);
    assert_eq!(code, 0, "record failed:\n{err}");
    let source = format!(
        "[stages.events]\ntype = \"replay\"\npath = \"{}\"\n",
        recorded.display()
    );
    let single = write_pipeline(&dir, "single", &source, true);
    crate::common::run_pipeline(single.parent().unwrap(), &single);

    // A run that wrote nothing to a file left no copy of it.
    let read = |path: PathBuf| match path.exists() {
        true => crate::common::read_jsonl(&path),
        false => Vec::new(),
    };
    for run in &runs {
        let dead = read(run.join("dead_letter.jsonl"));
        assert!(
            dead.iter()
                .all(|d| !d["reason"].as_str().unwrap_or("").starts_with("late")),
            "{}: records dead-lettered as late\n{all}",
            run.display()
        );
    }
    for name in ["avg_1m", "avg"] {
        let want: std::collections::BTreeSet<String> = rows(std::slice::from_ref(&single), name)
            .into_iter()
            .collect();
        let got: std::collections::BTreeSet<String> = runs
            .iter()
            .flat_map(|r| read(r.join(format!("{name}.jsonl"))))
            .map(|v| v.to_string())
            .collect();
        assert!(
            want.len() > if name == "avg" { 70 } else { 10_000 },
            "{name}: {}",
            want.len()
        );
        assert!(
            want == got,
            "{name}: {} results missing, e.g. {:?}; {} not in the single run, e.g. {:?}\n{all}",
            want.difference(&got).count(),
            want.difference(&got).take(3).collect::<Vec<_>>(),
            got.difference(&want).count(),
            got.difference(&want).take(3).collect::<Vec<_>>()
        );
    }
}
