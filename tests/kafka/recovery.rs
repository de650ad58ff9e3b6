//! Exact recovery from checkpoints at scale: 100,000 records on 3 partitions through a tumbling window
//! with allowed lateness and a session window, into MongoDB and files, killed (SIGKILL) or stopped
//! (SIGTERM) at 10 random moments and restarted each time. The final documents and file rows equal an
//! uninterrupted run's, field for field, row for row: nothing lost, nothing counted twice, sessions whole.

use super::merge::generated;
use super::*;
use bson::{doc, Document};
use mongodb::Client;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every document of a collection, by `_id`.
fn documents(uri: &str, db: &str, collection: &str) -> BTreeMap<String, Document> {
    block_on(async {
        let client = Client::with_uri_str(uri).await.unwrap();
        let coll = client.database(db).collection::<Document>(collection);
        let mut cursor = coll.find(doc! {}).await.unwrap();
        let mut out = BTreeMap::new();
        while cursor.advance().await.unwrap() {
            let d: Document = cursor.deserialize_current().unwrap();
            let id = d.get("_id").map(|v| v.to_string()).unwrap_or_default();
            assert!(out.insert(id, d).is_none(), "two documents with one _id");
        }
        out
    })
}

fn drop_database(uri: &str, db: &str) {
    block_on(async {
        let client = Client::with_uri_str(uri).await.unwrap();
        client.database(db).drop().await.unwrap();
    });
}

/// The file's lines, sorted: a restart may interleave the two windows' rows differently in time, but
/// each row must be there once.
fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn pipeline(brokers: &str, topic: &str, group: &str, uri: &str, db: &str) -> String {
    format!(
        r#"
[stages.events]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
start = "committed"
idle_timeout = "2s"
idle_partition = "1s"

[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = {{ field = "streams", factor = 1e8 }}

[stages.hourly]
type = "window"
inputs = ["scaled"]
plugin = "average"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "tumbling", size = "1h" }}
max_delay = "10s"
allowed_lateness = "5m"

[stages.sessions]
type = "window"
inputs = ["scaled"]
plugin = "sum"
config = {{ field = "streams" }}
key = "genre"
window = {{ kind = "session", gap = "5m" }}

[stages.hourly_file]
type = "file"
inputs = ["hourly"]
path = "out/hourly.jsonl"

[stages.sessions_file]
type = "file"
inputs = ["sessions"]
path = "out/sessions.jsonl"

[stages.hourly_mongodb]
type = "mongodb"
inputs = ["hourly"]
uri = "{uri}"
database = "{db}"
collection = "hourly"

[stages.sessions_mongodb]
type = "mongodb"
inputs = ["sessions"]
uri = "{uri}"
database = "{db}"
collection = "sessions"

[checkpoint]
dir = "checkpoints"
interval = "300ms"
shutdown_timeout = "5s"
"#
    )
}

/// What a run left: MongoDB documents of both collections, and both files' rows.
#[derive(Debug, PartialEq)]
struct Results {
    hourly: BTreeMap<String, Document>,
    sessions: BTreeMap<String, Document>,
    hourly_rows: Vec<String>,
    session_rows: Vec<String>,
}

fn results(dir: &Path, uri: &str, db: &str) -> Results {
    Results {
        hourly: documents(uri, db, "hourly"),
        sessions: documents(uri, db, "sessions"),
        hourly_rows: sorted_lines(&dir.join("out/hourly.jsonl")),
        session_rows: sorted_lines(&dir.join("out/sessions.jsonl")),
    }
}

/// A run of `file`, its standard error going to `log` (appended: one log for the whole series).
fn spawn_logged(file: &Path, log: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = tributary();
    cmd.current_dir(file.parent().unwrap())
        .arg("run")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(err);
    cmd.spawn().expect("spawn tributary run")
}

/// A small generator for the moments of the faults; the seed is printed, to replay a failure.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::env::var("TRIBUTARY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("fault moments: TRIBUTARY_TEST_SEED={seed}");
        Moments(seed)
    }

    /// A moment between `lo` and `hi` after a start.
    fn next(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo).mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}

/// One series at a time: the MongoDB test server (FerretDB on SQLite) slows down under several writers,
/// and slow writes are not what these tests are about.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What `setup` prepares: brokers, MongoDB URI, scratch directory, topic, the uninterrupted run's
/// results and how long that run took.
struct Setup {
    brokers: String,
    uri: String,
    dir: PathBuf,
    topic: String,
    baseline: Results,
    took: Duration,
}

/// Loads a 100k-record topic and computes the uninterrupted run's results.
fn setup(name: &str) -> Setup {
    let brokers = super::kafka_brokers();
    let uri = service("mongodb");
    let dir = scratch(name);
    let topic = unique("recovery");
    produce(
        &brokers,
        &topic,
        &generated(100_000, 3),
        &["--partitions", "3"],
    );
    let db = format!("baseline_{}", std::process::id());
    drop_database(&uri, &db);
    let file = write_pipeline(
        &dir,
        "baseline",
        &pipeline(&brokers, &topic, &unique("baseline"), &uri, &db),
    );
    let started = Instant::now();
    let (_, err) = common::run_pipeline(file.parent().unwrap(), &file);
    let took = started.elapsed();
    let baseline = results(file.parent().unwrap(), &uri, &db);
    drop_database(&uri, &db);
    assert!(
        baseline.hourly.len() > 1_000 && baseline.sessions.len() > 500,
        "the baseline has {} hourly and {} session documents:\n{err}",
        baseline.hourly.len(),
        baseline.sessions.len()
    );
    assert_eq!(baseline.hourly.len(), baseline.hourly_rows.len());
    assert_eq!(baseline.sessions.len(), baseline.session_rows.len());
    Setup {
        brokers,
        uri,
        dir,
        topic,
        baseline,
        took,
    }
}

/// Runs the pipeline, interrupting it with `signal` at 10 random moments, then once to the end.
/// Returns the results and the longest time a SIGTERM took to stop the run.
fn interrupted(name: &str, signal: i32, s: &Setup) -> (Results, Duration) {
    let Setup {
        brokers,
        uri,
        dir,
        topic,
        ..
    } = s;
    // Faults between 1/15 and 1/4 of an uninterrupted run after each start (within 0.3-2.5 s): early
    // enough that ten of them fall before the input ends, late enough that most runs checkpoint.
    let lo = (s.took / 15).clamp(Duration::from_millis(300), Duration::from_millis(1500));
    let hi = (s.took / 4).clamp(lo + Duration::from_millis(200), Duration::from_millis(2500));
    let db = format!("{name}_{}", std::process::id());
    drop_database(uri, &db);
    let file = write_pipeline(
        dir,
        name,
        &pipeline(brokers, topic, &unique(name), uri, &db),
    );
    let log = dir.join(format!("{name}.log"));
    let mut moments = Moments::new();
    let mut longest_stop = Duration::ZERO;
    let mut interrupted = 0;
    while interrupted < 10 {
        let mut child = spawn_logged(&file, &log);
        std::thread::sleep(moments.next(lo, hi));
        if child.try_wait().unwrap().is_some() {
            break; // the input ended before this fault: the run is over
        }
        let at = Instant::now();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                at.elapsed() < Duration::from_secs(30),
                "a run did not end within 30 s of signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!(
            "{name}: signal {signal} {interrupted}: ended in {:?}",
            at.elapsed()
        );
        longest_stop = longest_stop.max(at.elapsed());
        if signal == libc::SIGTERM {
            assert_eq!(
                status.code(),
                Some(0),
                "a stopped run failed:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        interrupted += 1;
    }
    assert!(
        interrupted >= 5,
        "only {interrupted} runs were interrupted: the runs end too soon for this test to mean much"
    );
    let mut last = spawn_logged(&file, &log);
    let (code, _, _) = wait_with_timeout(&mut last, Duration::from_secs(300));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "the last run failed:\n{log_text}");
    assert!(
        log_text.contains("resuming from checkpoint"),
        "no run resumed from a checkpoint:\n{log_text}"
    );
    let r = results(file.parent().unwrap(), uri, &db);
    drop_database(uri, &db);
    (r, longest_stop)
}

fn assert_equal(got: &Results, want: &Results, what: &str) {
    assert_eq!(
        got.hourly.len(),
        want.hourly.len(),
        "{what}: hourly documents"
    );
    for (id, d) in &want.hourly {
        assert_eq!(got.hourly.get(id), Some(d), "{what}: hourly document {id}");
    }
    assert_eq!(
        got.sessions.len(),
        want.sessions.len(),
        "{what}: session documents"
    );
    for (id, d) in &want.sessions {
        assert_eq!(
            got.sessions.get(id),
            Some(d),
            "{what}: session document {id}"
        );
    }
    assert!(
        got.hourly_rows == want.hourly_rows,
        "{what}: hourly file rows differ"
    );
    assert!(
        got.session_rows == want.session_rows,
        "{what}: session file rows differ"
    );
}

#[test]
fn kill_9_at_ten_random_moments_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = setup("kafka_recovery_kill");
    let (got, _) = interrupted("killed", libc::SIGKILL, &s);
    assert_equal(&got, &s.baseline, "after 10 kill -9");
}

#[test]
fn sigterm_at_ten_random_moments_changes_nothing_and_each_stop_is_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = setup("kafka_recovery_sigterm");
    let (got, longest) = interrupted("stopped", libc::SIGTERM, &s);
    assert_equal(&got, &s.baseline, "after 10 SIGTERMs");
    // A stop waits up to `shutdown_timeout` (5 s) for its checkpoint; what is not written by then
    // stays in the spool or the checkpoint. (A stop that hangs past it anyway is ended 2 s later by
    // `exit_if_a_stop_hangs`, which this bound does not allow for.)
    assert!(
        longest < Duration::from_secs(5),
        "a stop took {longest:?}, over the 5 s shutdown_timeout"
    );
}
