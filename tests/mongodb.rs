//! The mongodb sink against a real MongoDB-protocol server (FerretDB started by `scripts/services`, or
//! the server named by `TRIBUTARY_TEST_MONGODB`). Each test uses its own database, dropped first.
//!
//! What is checked: the default pipeline's documents equal the file sink's rows, typed; a second run
//! leaves the same documents; a run without a server spools in order and the next run writes the spool
//! before its own records; a server restart in the middle of a paced run loses nothing; 50,000 window
//! documents upserted twice are all there once.

mod common;

use bson::{doc, Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: one of them stops and restarts the server.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const COLLECTION: &str = "avg_streams_per_genre";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A client for one `block_on`: the driver's background tasks live on the runtime that made it.
async fn client(uri: &str) -> Client {
    let mut options = ClientOptions::parse(uri).await.unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(10));
    Client::with_options(options).unwrap()
}

fn drop_database(uri: &str, db: &str) {
    block_on(async { client(uri).await.database(db).drop().await.unwrap() });
}

/// Every document of the test collection, in insertion order.
fn documents(uri: &str, db: &str) -> Vec<Document> {
    block_on(async {
        let coll = client(uri)
            .await
            .database(db)
            .collection::<Document>(COLLECTION);
        let mut cursor = coll.find(doc! {}).await.unwrap();
        let mut out = Vec::new();
        while cursor.advance().await.unwrap() {
            out.push(cursor.deserialize_current().unwrap());
        }
        out
    })
}

/// A window result's identity: window start and end (ms since the epoch) and genre.
type Key = (i64, i64, String);
/// A window result's values: average and count, compared exactly.
type Values = (f64, i64);

fn rfc3339_millis(v: &serde_json::Value) -> i64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("window bound {v} is not text"));
    bson::DateTime::parse_rfc3339_str(text)
        .unwrap()
        .timestamp_millis()
}

/// The file sink's rows in order, as (key, values).
fn file_rows(path: &Path) -> Vec<(Key, Values)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = (
                rfc3339_millis(&r["window_start"]),
                rfc3339_millis(&r["window_end"]),
                r["genre"].as_str().unwrap().to_string(),
            );
            // serde_json (without `float_roundtrip`) may parse a float 1 ulp off; std's parser is exact.
            let avg = line
                .split("\"avg\":")
                .nth(1)
                .and_then(|t| t.split([',', '}']).next())
                .unwrap();
            (key, (avg.parse().unwrap(), r["count"].as_i64().unwrap()))
        })
        .collect()
}

/// What an upserting store of these rows holds: the last row of each key.
fn last_per_key<'a>(rows: impl IntoIterator<Item = &'a (Key, Values)>) -> BTreeMap<Key, Values> {
    rows.into_iter().cloned().collect()
}

/// A document as (key, values), checking the BSON types: dates, string, double, 64-bit integer.
fn typed(d: &Document) -> (Key, Values) {
    let date = |f: &str| match d.get(f) {
        Some(Bson::DateTime(t)) => t.timestamp_millis(),
        other => panic!("`{f}` should be a BSON date, found {other:?} in {d}"),
    };
    let genre = match d.get("genre") {
        Some(Bson::String(s)) => s.clone(),
        other => panic!("`genre` should be a string, found {other:?} in {d}"),
    };
    let avg = match d.get("avg") {
        Some(Bson::Double(x)) => *x,
        other => panic!("`avg` should be a double, found {other:?} in {d}"),
    };
    let count = match d.get("count") {
        Some(Bson::Int64(x)) => *x,
        other => panic!("`count` should be a 64-bit integer, found {other:?} in {d}"),
    };
    (
        (date("window_start"), date("window_end"), genre),
        (avg, count),
    )
}

/// The documents as a map, failing on a duplicated key.
fn by_key(docs: &[Document]) -> BTreeMap<Key, Values> {
    let mut out = BTreeMap::new();
    for d in docs {
        let (key, values) = typed(d);
        assert!(
            out.insert(key.clone(), values).is_none(),
            "two documents for {key:?}"
        );
    }
    out
}

/// `tributary run FILE` in `dir` with `MONGODB_URI` set; asserts success, returns stderr.
fn run(dir: &Path, file: &Path, uri: &str) -> String {
    let mut cmd = common::tributary();
    cmd.current_dir(dir)
        .arg("run")
        .arg(file)
        .env("MONGODB_URI", uri);
    let (code, out, err) = common::run(cmd);
    assert_eq!(
        code, 0,
        "tributary run failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    err
}

/// The repository's pipeline.toml, replaying the fixture, with the database renamed; written to `dir`.
/// `uri` is left out, so the run takes it from `MONGODB_URI`.
fn default_pipeline(dir: &Path, db: &str) -> PathBuf {
    let text = common::default_pipeline_replaying(&common::fixture("music_streaming_events.jsonl"));
    for needle in ["database = \"tributary\"", "[stages.per_minute_mongodb]"] {
        assert_eq!(
            text.matches(needle).count(),
            1,
            "pipeline.toml should hold `{needle}` once"
        );
    }
    let text = text.replace("database = \"tributary\"", &format!("database = \"{db}\""));
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spool_lines(path: &Path) -> Vec<(Key, Values)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            match Bson::try_from(serde_json::from_str::<serde_json::Value>(l).unwrap()).unwrap() {
                Bson::Document(d) => typed(&d),
                other => panic!("spool line is not a document: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn default_pipeline_writes_one_typed_document_per_window_and_genre() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_default";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-default");
    let file = default_pipeline(&dir, db);

    let err = run(&dir, &file, &uri);

    let rows = file_rows(&dir.join("out/avg_streams_per_genre_1m.jsonl"));
    assert!(
        rows.len() > 100,
        "the fixture gives a few hundred (window, genre) rows, found {}",
        rows.len()
    );
    let expected = last_per_key(&rows);
    assert_eq!(
        expected.len(),
        rows.len(),
        "in-order input: each (window, genre) is emitted once"
    );
    let docs = documents(&uri, db);
    assert_eq!(docs.len(), rows.len(), "one document per (window, genre)");
    assert_eq!(by_key(&docs), expected);
    let note = format!(
        "per_minute_mongodb: {} document(s) written to {db}.{COLLECTION}",
        rows.len()
    );
    assert!(
        err.contains(&note),
        "the run summary should say `{note}`:\n{err}"
    );
    assert!(!err.contains("warning"), "{err}");

    // The unique index on the key fields exists.
    let indexes: Vec<mongodb::IndexModel> = block_on(async {
        let coll = client(&uri)
            .await
            .database(db)
            .collection::<Document>(COLLECTION);
        let mut cursor = coll.list_indexes().await.unwrap();
        let mut out = Vec::new();
        while cursor.advance().await.unwrap() {
            out.push(cursor.deserialize_current().unwrap());
        }
        out
    });
    let key = doc! { "window_start": 1, "window_end": 1, "genre": 1 };
    assert!(
        indexes
            .iter()
            .any(|i| i.keys == key && i.options.as_ref().and_then(|o| o.unique) == Some(true)),
        "no unique index on the key fields: {indexes:?}"
    );
    let spool = dir.join("out/spool/per_minute_mongodb.jsonl");
    assert_eq!(
        std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0),
        0,
        "nothing should stay spooled"
    );
}

#[test]
fn running_twice_leaves_the_same_documents() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_rerun";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-rerun");
    let file = default_pipeline(&dir, db);

    run(&dir, &file, &uri);
    let first = documents(&uri, db);
    assert!(!first.is_empty());
    run(&dir, &file, &uri);
    let second = documents(&uri, db);
    // Same count, same values, and even the same `_id`s: documents are replaced in place.
    assert_eq!(second.len(), first.len());
    let ids = |docs: &[Document]| -> BTreeMap<Key, (Values, Bson)> {
        docs.iter()
            .map(|d| (typed(d).0, (typed(d).1, d.get("_id").cloned().unwrap())))
            .collect()
    };
    assert_eq!(ids(&second), ids(&first));
    assert_eq!(
        by_key(&second),
        last_per_key(&file_rows(&dir.join("out/avg_streams_per_genre_1m.jsonl")))
    );
}

/// 75,000 generated records (3 partitions) through the default pipeline: 51,108 window documents, about
/// 100 times the fixture's, so a write whose cost grows with the collection (FerretDB 1.x scanned its
/// whole table per `_id` lookup) shows. Upserted twice, each must be there once with the last value.
#[test]
fn fifty_thousand_window_documents_upserted_twice_are_all_there_once() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_50k";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-50k");
    let capture = dir.join("capture.jsonl");
    common::generate(&capture, Some(75_000), 3);
    let file = dir.join("pipeline.toml");
    let text = common::default_pipeline_replaying(&capture)
        .replace("database = \"tributary\"", &format!("database = \"{db}\""));
    std::fs::write(&file, text).unwrap();

    let rows = dir.join("out/avg_streams_per_genre_1m.jsonl");
    for round in 1..=2 {
        let started = Instant::now();
        let err = run(&dir, &file, &uri);
        let elapsed = started.elapsed().as_secs_f64();
        let expected = last_per_key(&file_rows(&rows));
        assert!(
            expected.len() >= 50_000,
            "only {} window results",
            expected.len()
        );
        // `by_key` fails on a key stored twice.
        let docs = documents(&uri, db);
        assert_eq!(docs.len(), expected.len(), "round {round}");
        assert!(
            by_key(&docs) == expected,
            "round {round}: documents differ from the file's rows"
        );
        assert!(
            err.contains(&format!("{} document(s) written", file_rows(&rows).len())),
            "{err}"
        );
        eprintln!(
            "round {round}: {} documents upserted in {elapsed:.1} s ({:.0}/s, whole run)",
            docs.len(),
            docs.len() as f64 / elapsed
        );
    }
}

/// The fixture with one record moved 90 s later, so its 1-minute window is emitted a second time with
/// a different average (allowed lateness 2m). Also returns the window's other minute-0 records, for a
/// second capture that emits that key again with the first value.
fn late_capture(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(common::fixture("music_streaming_events.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ts = |i: usize| parsed[i]["timestamp"].as_i64().unwrap();
    let genre = |i: usize| {
        let payload: serde_json::Value =
            serde_json::from_str(parsed[i]["value"].as_str().unwrap()).unwrap();
        payload["genre"].as_str().unwrap().to_string()
    };
    let start = ts(0) - ts(0) % 60_000;
    let minute0: Vec<usize> = (0..lines.len())
        .filter(|&i| ts(i) < start + 60_000)
        .collect();
    // A genre with two records in the first minute: the window is emitted with one, then updated.
    let moved = *minute0
        .iter()
        .find(|&&i| minute0.iter().filter(|&&j| genre(j) == genre(i)).count() >= 2)
        .expect("the fixture has a genre twice in its first minute");
    let after = (0..lines.len())
        .find(|&i| ts(i) >= ts(moved) + 90_000)
        .expect("the fixture spans minutes");
    let mut late: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == moved {
            continue;
        }
        late.push(l);
        if i == after {
            late.push(lines[moved]);
        }
    }
    let first_minute: Vec<&str> = minute0
        .iter()
        .filter(|&&i| i != moved)
        .map(|&i| lines[i])
        .collect();
    let (a, b) = (dir.join("late.jsonl"), dir.join("first_minute.jsonl"));
    std::fs::write(&a, late.join("\n") + "\n").unwrap();
    std::fs::write(&b, first_minute.join("\n") + "\n").unwrap();
    (a, b)
}

/// replay → scale → 1-minute average per genre (2 minutes of allowed lateness) → file and mongodb.
fn late_pipeline(dir: &Path, name: &str, capture: &Path, uri: &str, db: &str) -> PathBuf {
    let text = format!(
        r#"
[stages.events]
type = "replay"
path = "{capture}"
# One record a batch: windows fire between records, so the moved record updates an emitted window.
batch_size = 1

[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = {{ field = "streams", factor = 1e8 }}

[stages.avg]
type = "window"
inputs = ["scaled"]
plugin = "average"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "tumbling", size = "1m" }}
max_delay = "5s"
allowed_lateness = "2m"

[stages.rows]
type = "file"
inputs = ["avg"]
path = "{name}.jsonl"

[stages.store]
type = "mongodb"
inputs = ["avg"]
uri = "{uri}"
database = "{db}"
collection = "{COLLECTION}"
spool = "spool"
"#,
        capture = capture.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_run_without_server_spools_in_order_and_the_next_run_writes_the_spool_first() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_spool";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-spool");
    let (late, first_minute) = late_capture(&dir);

    // Run 1: nothing listens at the URI (which carries a password that must not be shown).
    let port = closed_port();
    let down = format!("mongodb://tributary:s3cret-pw@127.0.0.1:{port}/?authSource=admin");
    let file = late_pipeline(&dir, "run1", &late, &down, db);
    let started = Instant::now();
    let err = run(&dir, &file, &uri);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a run without a server must finish quickly: {:?}",
        started.elapsed()
    );
    assert!(!err.contains("s3cret-pw"), "the password leaked:\n{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{err}");
    let redacted = format!("mongodb://tributary:***@127.0.0.1:{port}/");
    assert!(
        warnings[0].contains(&redacted) && warnings[0].contains("spool/store.jsonl"),
        "{}",
        warnings[0]
    );

    let run1 = file_rows(&dir.join("run1.jsonl"));
    let spooled = spool_lines(&dir.join("spool/store.jsonl"));
    assert_eq!(
        spooled, run1,
        "the spool holds every result, in the order emitted"
    );
    let expected1 = last_per_key(&run1);
    let updated: Vec<&Key> = expected1
        .keys()
        .filter(|k| run1.iter().filter(|(r, _)| r == *k).count() > 1)
        .collect();
    assert_eq!(
        updated.len(),
        1,
        "the late record updates one window: {updated:?}"
    );
    let first_value = run1.iter().find(|(k, _)| k == updated[0]).unwrap().1;
    assert_ne!(
        first_value, expected1[updated[0]],
        "the update changes the window's values"
    );
    assert!(
        err.contains(&format!(
            "store: 0 document(s) written to {db}.{COLLECTION}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} document(s) spooled in", run1.len())),
        "{err}"
    );
    assert!(documents(&uri, db).is_empty());

    // Run 2, same spool, server up: the spool is written first (in order), then this run's records,
    // which set the updated window back to its first value.
    let file = late_pipeline(&dir, "run2", &first_minute, &uri, db);
    let err = run(&dir, &file, &uri);
    assert!(
        err.contains(&format!(
            "writing {} document(s) spooled by an earlier run",
            run1.len()
        )),
        "{err}"
    );
    let run2 = file_rows(&dir.join("run2.jsonl"));
    let again = run2
        .iter()
        .find(|(k, _)| k == updated[0])
        .expect("run 2 emits the updated window again");
    assert_eq!(again.1, first_value);
    let expected = last_per_key(run1.iter().chain(&run2));
    let docs = documents(&uri, db);
    assert_eq!(docs.len(), expected.len(), "one document per key");
    assert_eq!(by_key(&docs), expected);
    assert_eq!(
        std::fs::metadata(dir.join("spool/store.jsonl"))
            .unwrap()
            .len(),
        0,
        "the spool is drained"
    );
    assert!(
        err.contains(&format!("({} from the spool)", run1.len())),
        "{err}"
    );
}

/// The `scripts/services` FerretDB (this test restarts it, so it cannot use another server).
fn managed_mongodb() -> String {
    let script = common::repo().join("scripts/services");
    let status = Command::new(&script)
        .args(["start", "mongodb"])
        .status()
        .unwrap();
    assert!(status.success(), "scripts/services start mongodb failed");
    let env = Command::new(&script).arg("env").output().unwrap();
    let env = String::from_utf8_lossy(&env.stdout).into_owned();
    env.lines()
        .find_map(|l| {
            l.strip_prefix("export TRIBUTARY_TEST_MONGODB=")
                .map(|v| v.trim_matches(['\'', '"']).to_string())
        })
        .unwrap_or_else(|| panic!("scripts/services env printed no TRIBUTARY_TEST_MONGODB:\n{env}"))
}

fn services(cmd: &str) {
    let status = Command::new(common::repo().join("scripts/services"))
        .args([cmd, "mongodb"])
        .status()
        .unwrap();
    assert!(status.success(), "scripts/services {cmd} mongodb failed");
}

/// Starts the server again if the test stops while it is down.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new(common::repo().join("scripts/services"))
            .args(["start", "mongodb"])
            .status();
    }
}

#[test]
fn a_server_restart_in_the_middle_of_a_paced_run_loses_nothing() {
    let _serial = serial();
    let uri = managed_mongodb();
    let db = "tributary_test_restart";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-restart");
    // 600 records about 1 s apart, replayed 40× faster: ten 1-minute windows over about 15 s.
    let capture = dir.join("capture.jsonl");
    let status = Command::new("python3")
        .arg(common::fixture("generate.py"))
        .args(["--records", "600", "--out"])
        .arg(&capture)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(late_pipeline(&dir, "paced", &capture, &uri, db)).unwrap();
    let text = text.replacen(
        "type = \"replay\"\n",
        "type = \"replay\"\nspeed = 40.0\n",
        1,
    );
    let file = dir.join("paced.toml");
    std::fs::write(&file, text).unwrap();

    let log = dir.join("stderr.txt");
    let mut child = common::tributary()
        .current_dir(&dir)
        .arg("run")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Once the first documents are in, stop the server for a few seconds.
    let until = Instant::now() + Duration::from_secs(30);
    while documents(&uri, db).is_empty() {
        assert!(Instant::now() < until, "no document arrived within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the restart; make it slower"
    );
    let restart = Restart;
    services("stop");
    std::thread::sleep(Duration::from_secs(3));
    services("start");
    drop(restart);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended during the restart; make it slower"
    );

    let until = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the run did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("warning: stage `store`: cannot write to MongoDB"),
        "the outage was not noticed:\n{err}"
    );
    assert!(err.contains("is reachable again"), "{err}");
    assert!(
        !err.contains("spooled in"),
        "nothing should be left in the spool:\n{err}"
    );

    let rows = file_rows(&dir.join("paced.jsonl"));
    assert!(rows.len() > 300, "{}", rows.len());
    let expected = last_per_key(&rows);
    let docs = documents(&uri, db);
    assert_eq!(
        docs.len(),
        expected.len(),
        "one document per (window, genre)"
    );
    assert_eq!(by_key(&docs), expected);
}

#[test]
fn a_document_the_server_refuses_is_dead_lettered_and_the_others_are_written() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_refused";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-refused");
    // The fixture's first 20 records, and one more whose payload has a field MongoDB refuses at the top
    // level of a document (`$weird`): the records keyed by track go straight to the sink.
    let text = std::fs::read_to_string(common::fixture("music_streaming_events.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().take(20).map(str::to_string).collect();
    let bad_payload =
        r#"{"track":"Bad One","artist":"x","genre":"Rock","streams":1.0,"year":2000,"$weird":1}"#;
    let bad = serde_json::json!({
        "topic": "music_streaming_events", "partition": 0, "offset": 20,
        "timestamp": 1_717_243_300_000_i64, "key": "bad", "value": bad_payload,
    });
    lines.insert(10, bad.to_string());
    let capture = dir.join("capture.jsonl");
    std::fs::write(&capture, lines.join("\n") + "\n").unwrap();
    let file = dir.join("refused.toml");
    std::fs::write(
        &file,
        format!(
            "[stages.events]\ntype = \"replay\"\npath = {:?}\n\n[stages.store]\ntype = \"mongodb\"\ninputs = [\"events\"]\nuri = \"{uri}\"\ndatabase = \"{db}\"\ncollection = \"{COLLECTION}\"\nkey_fields = [\"track\"]\n",
            capture.display().to_string()
        ),
    )
    .unwrap();

    let err = run(&dir, &file, &uri);

    let dead = common::read_jsonl(&dir.join("out/dead_letter.jsonl"));
    assert_eq!(
        dead.len(),
        1,
        "only the bad record is dead-lettered: {dead:?}\n{err}"
    );
    assert!(
        dead[0]["line"].as_str().unwrap().contains("Bad One"),
        "{:?}",
        dead[0]
    );
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("MongoDB refused the document"),
        "{:?}",
        dead[0]
    );
    let tracks: std::collections::BTreeSet<String> = documents(&uri, db)
        .iter()
        .map(|d| d.get_str("track").unwrap().to_string())
        .collect();
    let expected: std::collections::BTreeSet<String> = text
        .lines()
        .take(20)
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            let payload: serde_json::Value =
                serde_json::from_str(line["value"].as_str().unwrap()).unwrap();
            payload["track"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tracks, expected, "every other record is written");
    // Records without the refused field do not carry it as null.
    assert!(documents(&uri, db)
        .iter()
        .all(|d| !d.contains_key("$weird")));
    assert!(
        err.contains(&format!("store: {} document(s) written", expected.len())),
        "{err}"
    );
}

/// Each document's `_id` is its key as canonical Extended JSON text (window start, end, genre), so an
/// upsert finds it by primary key. A collection that already holds a document with an ObjectId `_id`
/// (an older tributary's) is upserted by its key fields instead, with a warning, and that document is
/// replaced in place: still one document per key.
#[test]
fn documents_are_identified_by_their_key_and_older_collections_still_upsert() {
    let _serial = serial();
    let uri = common::service("mongodb");
    let db = "tributary_test_ids";
    drop_database(&uri, db);
    let dir = common::scratch("mongodb-ids");
    let file = default_pipeline(&dir, db);
    let err = run(&dir, &file, &uri);
    assert!(!err.contains("ObjectId"), "{err}");
    let docs = documents(&uri, db);
    assert!(!docs.is_empty());
    for d in &docs {
        let ((start, end, genre), _) = typed(d);
        let expected = format!(
            r#"{{"window_start":{{"$date":{{"$numberLong":"{start}"}}}},"window_end":{{"$date":{{"$numberLong":"{end}"}}}},"genre":{}}}"#,
            serde_json::to_string(&genre).unwrap()
        );
        assert_eq!(d.get_str("_id").unwrap(), expected, "{d}");
    }

    // An older tributary's document for the first key, with another average.
    let first = docs[0].clone();
    drop_database(&uri, db);
    let mut legacy = first.clone();
    legacy.insert("_id", bson::oid::ObjectId::new());
    legacy.insert("avg", -1.0);
    block_on(async {
        client(&uri)
            .await
            .database(db)
            .collection::<Document>(COLLECTION)
            .insert_one(legacy.clone())
            .await
            .unwrap()
    });
    let err = run(&dir, &file, &uri);
    assert!(
        err.contains("holds documents with ObjectId `_id`s"),
        "{err}"
    );
    let after = documents(&uri, db);
    assert_eq!(
        by_key(&after),
        by_key(&docs),
        "one document per key, the old one replaced"
    );
    let replaced = after
        .iter()
        .find(|d| typed(d).0 == typed(&first).0)
        .unwrap();
    assert_eq!(replaced.get("_id"), legacy.get("_id"), "replaced in place");
}
