//! `mode = "group"`: several processes share a topic's partitions through Kafka's consumer group, at
//! the scale users run (100,000 records over 6 partitions, produced live while the members read), with
//! members that join and members that are killed mid-run.
//!
//! Every record carries a sequence number (`seq`), so the members' outputs together can be checked
//! record by record against the capture: nothing lost, and nothing read twice where the group promises
//! it (partitions moved by a rebalance are committed where their old owner stopped).

use super::{unique, wait_with_timeout};
use crate::common::{generate, scratch, service, tributary};
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

/// A stateless pipeline (kafka in group mode → scale → file), in `dir/name`.
fn member_pipeline(dir: &Path, name: &str, brokers: &str, topic: &str, group: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"[dead_letter]
path = "out/dead_letter.jsonl"

[stages.events]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
mode = "group"
idle_timeout = "3s"
# A killed member's partitions go to the others after 6 s rather than librdkafka's 45 s.
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}

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
        ),
    )
    .unwrap();
    file
}

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

/// Three members and a fourth that joins mid-run: Kafka shares the partitions, the rebalance moves
/// some to the newcomer, and together they write every record exactly once.
#[test]
fn group_members_share_the_partitions_and_a_member_joining_mid_run_repeats_nothing() {
    let brokers = service("kafka");
    let dir = scratch("kafka_group_join");
    let capture = numbered_capture(&dir);
    let (topic, group) = (unique("group-join"), unique("g"));
    let files: Vec<PathBuf> = (1..=4)
        .map(|i| member_pipeline(&dir, &format!("m{i}"), &brokers, &topic, &group))
        .collect();
    let mut producer = spawn_producer(&brokers, &topic, &capture);
    let start = Instant::now();
    let mut members: Vec<Child> = files[..3].iter().map(|f| spawn(f)).collect();
    at(start, 8);
    members.push(spawn(&files[3]));
    wait_ok(&mut producer, "produce");
    let logs: Vec<String> = members
        .iter_mut()
        .enumerate()
        .map(|(i, m)| wait_ok(m, &format!("member {}", i + 1)))
        .collect();
    let all = logs.join("\n");
    let seen = tally(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, twice),
        (0, 0),
        "records missing / written more than once\n{all}"
    );
    for (i, (f, log)) in files.iter().zip(&logs).enumerate() {
        assert!(
            !seqs(f).is_empty(),
            "member {} wrote nothing:\n{log}",
            i + 1
        );
        assert!(log.contains(&format!("joins group `{group}`")), "{log}");
        assert!(
            log.contains(&format!("group `{group}` assigned partition")),
            "{log}"
        );
    }
    assert!(
        all.contains(&format!("group `{group}` moved partition")),
        "the newcomer took partitions from a member:\n{all}"
    );
    // Each member wrote the records of each partition it read in order, whoever read it before.
    for f in &files {
        let s = seqs(f);
        for p in 0..PARTITIONS as u64 {
            let mine: Vec<u64> = s
                .iter()
                .copied()
                .filter(|q| q % PARTITIONS as u64 == p)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "partition {p} out of order in {}",
                f.display()
            );
        }
    }
}

/// A member killed mid-run (SIGKILL: no goodbye, no commit) and started again: the group gives its
/// partitions to the others, and they read again what it had not committed. Nothing is lost; records
/// are written twice only where the killed member had written them and not yet committed.
#[test]
fn a_member_killed_mid_run_and_started_again_loses_nothing() {
    let brokers = service("kafka");
    let dir = scratch("kafka_group_kill");
    let capture = numbered_capture(&dir);
    let (topic, group) = (unique("group-kill"), unique("g"));
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| member_pipeline(&dir, &format!("m{i}"), &brokers, &topic, &group))
        .collect();
    let mut producer = spawn_producer(&brokers, &topic, &capture);
    let start = Instant::now();
    let mut members: Vec<Child> = files.iter().map(|f| spawn(f)).collect();
    at(start, 7);
    let written_before_kill = seqs(&files[1]).len();
    members[1].kill().unwrap();
    members[1].wait().unwrap();
    at(start, 14);
    members[1] = spawn(&files[1]);
    wait_ok(&mut producer, "produce");
    let logs: Vec<String> = members
        .iter_mut()
        .enumerate()
        .map(|(i, m)| wait_ok(m, &format!("member {}", i + 1)))
        .collect();
    let all = logs.join("\n");
    assert!(
        written_before_kill > 0,
        "member 2 wrote nothing before it was killed:\n{all}"
    );
    let seen = tally(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let missing: Vec<usize> = (0..RECORDS).filter(|&i| seen[i] == 0).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, first {:?}\n{all}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Only what the killed member handled after its last commit (every 5 s) is read again.
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert!(twice < RECORDS / 4, "{twice} records written twice\n{all}");
    assert!(
        logs[0].contains("assigned") && logs[2].contains("assigned"),
        "{all}"
    );
    assert!(
        logs.iter()
            .any(|l| l.matches(&format!("group `{group}` assigned")).count() > 1),
        "the killed member's partitions went to another member:\n{all}"
    );
}

/// What group mode cannot do yet is refused before anything runs, at the line that asks for it.
#[test]
fn group_mode_refuses_window_stages_and_a_fallback_at_validate() {
    let dir = scratch("kafka_group_validate");
    let file = member_pipeline(&dir, "windowed", "127.0.0.1:9", "t", "g");
    let text = std::fs::read_to_string(&file).unwrap()
        + "\n[stages.per_minute]\ntype = \"window\"\ninputs = [\"scaled\"]\nplugin = \"average\"\nconfig = { field = \"streams\" }\nkey = \"genre\"\nwindow = { kind = \"tumbling\", size = \"1m\" }\n";
    std::fs::write(&file, &text).unwrap();
    let mut cmd = tributary();
    cmd.arg("validate").arg(&file);
    let (code, _, err) = crate::common::run(cmd);
    assert_ne!(code, 0, "{err}");
    let line = text.lines().position(|l| l.starts_with("mode =")).unwrap() + 1;
    assert!(err.contains(&format!("pipeline.toml:{line}:8")), "{err}");
    assert!(
        err.contains("window stage `per_minute` reads this source")
            && err.contains("use `mode = \"all\"`"),
        "{err}"
    );

    let file = member_pipeline(&dir, "fallback", "127.0.0.1:9", "t", "g");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "idle_timeout = \"3s\"",
        "idle_timeout = \"3s\"\nfallback = \"c.jsonl\"",
    );
    std::fs::write(&file, &text).unwrap();
    let mut cmd = tributary();
    cmd.arg("validate").arg(&file);
    let (code, _, err) = crate::common::run(cmd);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("`fallback` replays the whole capture in every process"),
        "{err}"
    );
}
