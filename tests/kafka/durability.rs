//! What a crash leaves behind: a record whose offset the group committed is in the results or in the
//! dead-letter file, never lost with the process.

use super::merge::{generated, rewrite};
use super::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};

/// The group's committed offset per partition (0 where it has none).
fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| {
            let at = match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => 0,
            };
            (p, at)
        })
        .collect()
}

/// 20,000 records on 3 partitions, every tenth with a payload that is not JSON, read until the group has
/// committed nearly everything, then killed with SIGKILL. Every bad record below the committed offsets
/// is in the dead-letter file: dead letters are made durable before offsets are committed. (Before, the
/// last few kilobytes of dead letters sat in a buffer while their offsets were committed: this test
/// failed then.)
#[test]
fn dead_letters_are_on_disk_before_their_offsets_are_committed() {
    let brokers = super::kafka_brokers();
    let dir = scratch("kafka_durable_dead_letters");
    let mut bad: BTreeSet<(i64, i64)> = BTreeSet::new();
    let per_partition = 20_000 / 3;
    let capture = rewrite(&generated(20_000, 3), &dir, "bad.jsonl", |i, l| {
        if i % 10 == 5 {
            l["value"] = "{\"streams\":".into();
            // Offsets in the topic follow the capture's, partition by partition.
            bad.insert((l["partition"].as_i64().unwrap(), (i / 3) as i64));
        }
        true
    });
    assert!(per_partition > 0);
    let topic = unique("durable");
    let group = unique("group");
    produce(&brokers, &topic, &capture, &["--partitions", "3"]);
    let source = kafka_source(
        &brokers,
        &topic,
        &group,
        // Small batches, so that the batches the open last minute holds back (uncommitted) are fewer
        // than the dead letters a write buffer holds.
        "start = \"committed\"\ncommit_interval = \"1s\"\nbatch_size = 50",
    );
    let file = write_pipeline(&dir, "live", &tumbling_pipeline(&source));
    let mut run = spawn_pipeline(&file);
    // The open last minute keeps its records uncommitted; everything before it gets committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let offsets = loop {
        let offsets = committed(&brokers, &group, &topic, 3);
        if offsets.values().sum::<i64>() >= 19_000 {
            break offsets;
        }
        assert!(run.try_wait().unwrap().is_none(), "the run ended by itself");
        assert!(
            Instant::now() < deadline,
            "the group did not commit 19,000 offsets within 60 s: {offsets:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    run.wait().unwrap();

    let text =
        std::fs::read_to_string(file.parent().unwrap().join("out/dead_letter.jsonl")).unwrap();
    // A line the kill cut short can only be the last one.
    let written: BTreeSet<(i64, i64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|d| {
            (
                d["at"]["partition"].as_i64().unwrap(),
                d["at"]["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    let covered: Vec<&(i64, i64)> = bad
        .iter()
        .filter(|(p, o)| *o < offsets[&(*p as i32)])
        .collect();
    assert!(
        covered.len() > 1_800,
        "{} bad records committed",
        covered.len()
    );
    let missing: Vec<&&(i64, i64)> = covered.iter().filter(|k| !written.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed bad records are not in the dead-letter file, e.g. {:?}",
        missing.len(),
        covered.len(),
        missing.first()
    );
}

/// Two runs in one directory with `start = "committed"`: the second appends to the file sink and the
/// dead-letter file of the first instead of erasing them, so together they hold every record once.
#[test]
fn a_resumed_run_appends_to_what_the_first_run_wrote() {
    let brokers = super::kafka_brokers();
    let dir = scratch("kafka_resume_appends");
    let capture = rewrite(&generated(3_000, 3), &dir, "bad.jsonl", |i, l| {
        if i % 10 == 5 {
            l["value"] = "{".into();
        }
        true
    });
    let topic = unique("appends");
    let group = unique("group");
    produce(&brokers, &topic, &capture, &["--partitions", "3"]);
    // Both runs in one directory: the second finds the first one's output files.
    let run = |start: &str| {
        let source = kafka_source(&brokers, &topic, &group, start);
        run_in(&dir, "run", &tumbling_pipeline(&source))
    };
    let first = run("start = \"committed\"\nmax_records = 1500");
    assert_eq!(first.dead.len(), 150, "{}", first.stderr);
    let both = run("start = \"committed\"\nidle_timeout = \"2s\"");
    let counted: i64 = counts(&[&both.per_minute]).values().sum();
    assert_eq!(
        (counted, both.dead.len()),
        (2_700, 300),
        "the file holds the rows of both runs, the dead letters of both runs:\n{}",
        both.stderr
    );
}
