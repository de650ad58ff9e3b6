//! Live equals replay at scale: 100k+ records over several partitions that arrive unevenly, a partition
//! that turns up late, an empty one, one ten times larger, a partition added while running, several
//! topics, and a broker stopped and started mid-run. Each live run must give the replay's per-window rows
//! field for field (floating-point sums included, which depend on the order records arrive in) and
//! dead-letter nothing.

use super::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

/// `fixtures/generate.py --records N --partitions P`, written once per test run and shared.
pub(crate) fn generated(records: usize, partitions: usize) -> PathBuf {
    static MADE: Mutex<Option<HashMap<(usize, usize), PathBuf>>> = Mutex::new(None);
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let made = made.get_or_insert_with(HashMap::new);
    if let Some(path) = made.get(&(records, partitions)) {
        return path.clone();
    }
    let dir = repo().join("target/test-scratch/captures");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{records}x{partitions}.jsonl"));
    generate(&out, Some(records), partitions);
    made.insert((records, partitions), out.clone());
    out
}

/// Writes the lines of `capture` that `keep` returns true for, after it has changed them (their
/// `partition` or `topic`), to `dir/name`. `keep` gets the line's index and the parsed line.
pub(crate) fn rewrite(
    capture: &Path,
    dir: &Path,
    name: &str,
    mut keep: impl FnMut(usize, &mut Value) -> bool,
) -> PathBuf {
    let out = dir.join(name);
    let mut text = String::new();
    let reader = BufReader::new(std::fs::File::open(capture).unwrap());
    for (i, line) in reader.lines().enumerate() {
        let mut v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if keep(i, &mut v) {
            text.push_str(&v.to_string());
            text.push('\n');
        }
    }
    std::fs::write(&out, text).unwrap();
    out
}

fn partition_of(line: &Value) -> i64 {
    line["partition"].as_i64().unwrap()
}

/// A kafka source reading `topics` to the end (`idle_timeout`), from a fresh group.
fn live_source(brokers: &str, topics: &[&str], extra: &str) -> String {
    let topics = topics
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "type = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [{topics}]\ngroup_id = \"{}\"\nstart = \"earliest\"\n{extra}\n",
        unique("group")
    )
}

/// The tumbling-window pipeline replaying `capture`: what every live run of the same records must give.
fn replay_rows(dir: &Path, name: &str, capture: &Path) -> RunOutput {
    let replay = replay_any(dir, name, capture);
    assert!(replay.dead.is_empty(), "the replay dead-letters nothing");
    replay
}

/// [`replay_rows`] for a capture that may hold late records.
fn replay_any(dir: &Path, name: &str, capture: &Path) -> RunOutput {
    let replay = run_in(
        dir,
        name,
        &tumbling_pipeline(&format!(
            "type = \"replay\"\npath = {:?}\n",
            capture.display().to_string()
        )),
    );
    assert!(replay.per_minute.len() > 100, "the replay has rows");
    replay
}

/// Live rows equal the replay's, field for field, and nothing is dead-lettered or late.
fn assert_same(live: &RunOutput, replay: &RunOutput, what: &str) {
    assert!(
        live.dead.is_empty(),
        "{what}: {} records dead-lettered, the first: {}\n{}",
        live.dead.len(),
        live.dead[0],
        live.stderr
    );
    assert_eq!(
        live.per_minute.len(),
        replay.per_minute.len(),
        "{what}: number of rows"
    );
    if let Some(i) =
        (0..live.per_minute.len()).find(|&i| live.per_minute[i] != replay.per_minute[i])
    {
        panic!(
            "{what}: row {i} differs from the replay's:\nlive   {}\nreplay {}",
            live.per_minute[i], replay.per_minute[i]
        );
    }
}

/// The summary's "records waited … longest N s, for partition P of `topic`": (N in seconds, P).
fn longest_wait(stderr: &str) -> Option<(f64, String)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("for slower partitions"))?;
    let longest = line.split("longest ").nth(1)?;
    let (amount, rest) = longest.split_once(' ')?;
    let seconds = if rest.starts_with("ms") {
        amount.parse::<f64>().ok()? / 1000.0
    } else {
        amount.parse::<f64>().ok()?
    };
    let partition = rest.split("for ").nth(1)?.trim_end_matches(')').to_string();
    Some((seconds, partition))
}

/// Loads `capture` into a new topic of `partitions` partitions, reads it live once it is all there,
/// and checks the result against the replay's.
fn loaded_topic_equals_replay(dir: &Path, capture: &Path, partitions: usize, runs: usize) {
    let brokers = super::kafka_brokers();
    let topic = unique("topic");
    let said = produce(
        &brokers,
        &topic,
        capture,
        &["--partitions", &partitions.to_string()],
    );
    assert!(said.contains("created"), "{said}");
    let replay = replay_rows(dir, "replay", capture);
    for run in 1..=runs {
        let source = live_source(&brokers, &[&topic], "idle_timeout = \"5s\"");
        let live = run_in(dir, &format!("live{run}"), &tumbling_pipeline(&source));
        assert_same(&live, &replay, &format!("live run {run}"));
    }
}

/// Reads a 3-partition topic live while partitions 0 and 1 of a 100k capture are loaded, then, 5 s
/// later, partition 2. Returns the run's outputs, the capture and the topic.
fn partition_2_loaded_late(dir: &Path, source_extra: &str) -> (RunOutput, PathBuf, String) {
    let brokers = super::kafka_brokers();
    let capture = generated(100_000, 3);
    let first = rewrite(&capture, dir, "p01.jsonl", |_, l| partition_of(l) != 2);
    let last = rewrite(&capture, dir, "p2.jsonl", |_, l| partition_of(l) == 2);
    let topic = unique("late");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    produce(&brokers, &topic, &empty, &["--partitions", "3"]);
    let source = live_source(&brokers, &[&topic], source_extra);
    let file = write_pipeline(dir, "live", &tumbling_pipeline(&source));
    let mut run = spawn_pipeline(&file);
    produce(&brokers, &topic, &first, &[]);
    std::thread::sleep(Duration::from_secs(5));
    produce(&brokers, &topic, &last, &[]);
    let (code, stdout, stderr) = wait_with_timeout(&mut run, Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    (
        outputs(file.parent().unwrap(), stdout, stderr),
        capture,
        topic,
    )
}

/// The reproduction: 200,000 records on 3 partitions, read live three times in a row, each run
/// equal to the replay. Before the merge waited for every partition, each run dead-lettered 12-43% of
/// the records as late, a different number every time.
#[test]
fn live_equals_replay_at_scale_three_runs_in_a_row() {
    let dir = scratch("kafka_merge_200k");
    loaded_topic_equals_replay(&dir, &generated(200_000, 3), 3, 3);
}

/// `produce` through a producer queue far smaller than the capture (`queue.buffering.max.messages =
/// 500`, against 100,000 records on 3 partitions): sending meets a full queue over and over, and each
/// time `produce` serves delivery reports and sends again. The topic must still hold every
/// record once, in order: read live, it gives the replay's rows (a lost or doubled record would change
/// a count or a sum).
#[test]
fn produce_through_a_full_queue_loses_and_doubles_nothing() {
    let dir = scratch("kafka_merge_full_queue");
    let capture = generated(100_000, 3);
    let brokers = super::kafka_brokers();
    let topic = unique("fullq");
    let said = produce(
        &brokers,
        &topic,
        &capture,
        &[
            "--partitions",
            "3",
            "--property",
            "queue.buffering.max.messages=500",
        ],
    );
    assert!(said.contains("produced 100000 records"), "{said}");
    let replay = replay_rows(&dir, "replay", &capture);
    let source = live_source(&brokers, &[&topic], "idle_timeout = \"5s\"");
    let live = run_in(&dir, "live", &tumbling_pipeline(&source));
    assert_same(&live, &replay, "produced through a full queue");
}

/// Partition 2 is loaded 5 s after partitions 0 and 1, while the run reads them: it is read to its end
/// (empty) the whole time, but not idle for `idle_partition`, so the others' records wait for it, and
/// the result is the replay's. The summary names the wait.
#[test]
fn a_partition_loaded_late_is_waited_for() {
    let dir = scratch("kafka_merge_late_partition");
    let (live, capture, topic) =
        partition_2_loaded_late(&dir, "idle_timeout = \"8s\"\nidle_partition = \"30s\"");
    let replay = replay_rows(&dir, "replay", &capture);
    assert_same(&live, &replay, "partition 2 loaded 5 s late");
    let (waited, partition) = longest_wait(&live.stderr)
        .unwrap_or_else(|| panic!("no wait in the summary:\n{}", live.stderr));
    assert!(
        waited >= 4.0 && partition == format!("partition 2 of `{topic}`"),
        "the longest wait ({waited} s, {partition}) is the one for partition 2:\n{}",
        live.stderr
    );
}

/// The documented other side: with `idle_partition = "1s"`, partition 2 turns idle before it is loaded,
/// the others' records go on without it, and its records, far behind the watermark when they come,
/// are late: dead-lettered with reason `late`, counted in the summary, none lost.
#[test]
fn records_of_a_partition_idle_longer_than_idle_partition_are_late() {
    let dir = scratch("kafka_merge_idle_partition");
    // Long enough not to end the input between the two loads on a busy machine.
    let (live, _, _) =
        partition_2_loaded_late(&dir, "idle_timeout = \"15s\"\nidle_partition = \"1s\"");
    let in_last = line_count(&dir.join("p2.jsonl"));
    let late = live
        .dead
        .iter()
        .filter(|d| d["reason"].as_str().unwrap().starts_with("late"))
        .count();
    // Only records of partition 2 in the last minutes (within `max_delay` of the end) are on time.
    assert!(
        late > in_last * 9 / 10 && live.dead.len() == late,
        "{late} of {in_last} records of partition 2 are late, {} dead-lettered:\n{}",
        live.dead.len(),
        live.stderr
    );
    let counted: i64 = counts(&[&live.per_minute]).values().sum();
    assert_eq!(
        counted as usize + late,
        100_000,
        "every record is in a window or dead-lettered"
    );
}

/// One of three partitions holds nothing: it holds the others back for `idle_partition` once, at the
/// start, then the run goes on, equal to the replay.
#[test]
fn an_empty_partition() {
    let dir = scratch("kafka_merge_empty_partition");
    let capture = rewrite(&generated(100_000, 3), &dir, "p01.jsonl", |_, l| {
        partition_of(l) != 2
    });
    loaded_topic_equals_replay(&dir, &capture, 3, 1);
}

/// Partition 2 holds ten times the records of partitions 0 and 1 over the same time span: the small
/// partitions wait in librdkafka's prefetch while the large one is read, and nothing is late.
#[test]
fn a_partition_ten_times_larger_than_the_others() {
    let dir = scratch("kafka_merge_skewed");
    let capture = rewrite(&generated(120_000, 1), &dir, "skewed.jsonl", |i, l| {
        l["partition"] = match i % 12 {
            0 => 0,
            1 => 1,
            _ => 2,
        }
        .into();
        true
    });
    loaded_topic_equals_replay(&dir, &capture, 3, 1);
}

/// Two topics of two partitions each, read by one source: merged by timestamp as one stream.
#[test]
fn several_topics_merge_into_one_stream() {
    let brokers = super::kafka_brokers();
    let dir = scratch("kafka_merge_topics");
    let (a, b) = (unique("topic-a"), unique("topic-b"));
    let capture = rewrite(&generated(100_000, 1), &dir, "two.jsonl", |i, l| {
        l["topic"] = if i % 2 == 0 { a.as_str() } else { b.as_str() }.into();
        l["partition"] = ((i / 2) % 2).into();
        true
    });
    for (t, parity) in [(&a, 0), (&b, 1)] {
        let mine = rewrite(&capture, &dir, &format!("{t}.jsonl"), |i, _| {
            i % 2 == parity
        });
        produce(&brokers, t, &mine, &["--partitions", "2"]);
    }
    let replay = replay_rows(&dir, "replay", &capture);
    let source = live_source(&brokers, &[&a, &b], "idle_timeout = \"5s\"");
    let live = run_in(&dir, "live", &tumbling_pipeline(&source));
    assert!(
        live.stderr.contains("(4 partitions"),
        "reads both topics:\n{}",
        live.stderr
    );
    assert_same(&live, &replay, "two topics");
}

/// Standard error of a running pipeline, collected as it is written.
struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(file: &Path) -> Watched {
        let mut child = spawn_pipeline(file);
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watched {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr.lock().unwrap().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the run ended ({status}) before saying `{needle}`:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the run did not say `{needle}` within {limit:?}:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn finish(mut self, limit: Duration) -> (i32, String, String) {
        let (code, stdout, _) = wait_with_timeout(&mut self.child, limit);
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (code, stdout, stderr)
    }
}

/// A topic grows from 2 to 3 partitions while a run reads it: the source finds the new partition, reads
/// it from its beginning, and merges it like the others, so the result equals the replay of everything.
#[test]
fn a_partition_added_while_running_is_merged_like_the_others() {
    let brokers = super::kafka_brokers();
    let dir = scratch("kafka_merge_added_partition");
    let capture = generated(100_000, 1);
    // The first half on two partitions, the second half on three.
    let all = rewrite(&capture, &dir, "all.jsonl", |i, l| {
        l["partition"] = (if i < 50_000 { i % 2 } else { i % 3 }).into();
        true
    });
    let first = rewrite(&all, &dir, "first.jsonl", |i, _| i < 50_000);
    let second = rewrite(&all, &dir, "second.jsonl", |i, _| i >= 50_000);
    let topic = unique("grows");
    produce(&brokers, &topic, &first, &["--partitions", "2"]);
    let replay = replay_rows(&dir, "replay", &all);

    // Long enough not to end the input before the partition is found and loaded on a busy machine.
    // Partitions 0 and 1 sit at their end from the first half until the second is produced; on a
    // loaded machine (CI) that took more than the default 5 s of `idle_partition`, so they were idle,
    // the first partition to deliver the burst moved the watermark hours ahead, and the others'
    // records came late (two CI runs; reproduced by waiting 7 s before producing the second half). That
    // is what `idle_partition` promises; what this test checks is the merge of the added partition.
    let source = live_source(
        &brokers,
        &[&topic],
        "idle_timeout = \"15s\"\nidle_partition = \"30s\"",
    );
    let file = write_pipeline(&dir, "live", &tumbling_pipeline(&source));
    let mut run = Watched::spawn(&file);
    run.wait_for("(2 partitions", Duration::from_secs(30));
    add_partitions(&brokers, &topic, 3);
    run.wait_for(
        &format!("partition 2 of `{topic}` was added"),
        Duration::from_secs(20),
    );
    produce(&brokers, &topic, &second, &[]);
    let (code, stdout, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    let live = outputs(file.parent().unwrap(), stdout, stderr);
    assert_same(&live, &replay, "a partition added while running");
}

/// Grows `topic` to `total` partitions with the admin API.
fn add_partitions(brokers: &str, topic: &str, total: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let results = tributary::kafka::block_on(admin.create_partitions(
        &[NewPartitions::new(topic, total)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create_partitions");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("adding partitions to `{t}`: {e}"));
    }
}

/// The broker is stopped and started again while records are produced and read. The source says it lost
/// the broker and got it back; no idle clock ran in between, so no partition was passed over, and the
/// result equals the replay of what the topic holds, as `record` writes it. (That is the capture plus,
/// at times, a batch the broker wrote twice across its restart although the producer is idempotent:
/// seen with Kafka 3.9, 87 records at offsets 2164.. repeating 2077..; such copies are late in both runs
/// alike, since their timestamps are behind the records before them.)
#[test]
fn a_broker_restart_mid_run_changes_nothing() {
    let dir = scratch("kafka_merge_broker_restart");
    let broker = OwnBroker::start(&dir);
    let brokers = broker.brokers.clone();
    let capture = generated(100_000, 3);
    let topic = unique("restart");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    produce(&brokers, &topic, &empty, &["--partitions", "3"]);

    // The outage (about 30 s) outlasts `idle_partition`: had the idle clocks run during it, partitions
    // read to their end would have turned idle, and their records produced through the outage would be
    // late. After the restart the producer may take some seconds to deliver to every partition again;
    // 20 s leaves room for that on a busy machine.
    let source = live_source(
        &brokers,
        &[&topic],
        "idle_timeout = \"10s\"\nidle_partition = \"20s\"",
    );
    let file = write_pipeline(&dir, "live", &tumbling_pipeline(&source));
    let run = Watched::spawn(&file);
    // 100,000 records about 1 s apart, produced 8,000 times faster: about 12 s.
    let mut producer = tributary()
        .args(["produce", "--brokers", &brokers, "--topic", &topic])
        .args(["--speed", "8000"])
        .arg(&capture)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = file
        .parent()
        .unwrap()
        .join("out/avg_streams_per_genre_1m.jsonl");
    broker.outage_after_first_row(
        &rows,
        &mut producer,
        Duration::from_secs(30),
        Duration::from_secs(22),
    );
    let (p_code, _, p_err) = wait_with_timeout(&mut producer, Duration::from_secs(120));
    assert_eq!(p_code, 0, "produce failed:\n{p_err}");
    assert!(p_err.contains("produced 100000 records"), "{p_err}");
    let (code, stdout, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cannot reach kafka") && stderr.contains("reconnected to kafka"),
        "the run did not notice the outage:\n{stderr}"
    );
    let live = outputs(file.parent().unwrap(), stdout, stderr);

    let read: u64 = live
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("events (kafka)"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for `events` in the summary:\n{}", live.stderr));
    assert!(read >= 100_000, "the run read {read} records");
    let recorded = dir.join("recorded.jsonl");
    let mut cmd = tributary();
    cmd.args(["record", "--brokers", &brokers, "--topic", &topic])
        .args([
            "--max-records",
            &read.to_string(),
            "--duration",
            "60s",
            "--out",
        ])
        .arg(&recorded);
    let (code, _, err) = common::run(cmd);
    assert_eq!(code, 0, "record failed:\n{err}");
    assert!(err.contains(&format!("recorded {read} records")), "{err}");
    let replay = replay_any(&dir, "replay-recorded", &recorded);
    assert_eq!(
        live.dead, replay.dead,
        "the live run dead-letters what the replay of the topic does"
    );
    if read == 100_000 {
        assert!(live.dead.is_empty());
        assert_same(
            &live,
            &replay_rows(&dir, "replay", &capture),
            "a broker restart",
        );
    }
    let same_rows = live.per_minute == replay.per_minute;
    assert!(
        same_rows,
        "the live rows differ from the replay of the topic"
    );
}
