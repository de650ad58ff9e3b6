//! `type = "mongodb"`: upserts records into a MongoDB collection, one typed document per key, and
//! spools them to a local file while the server cannot be reached.
//!
//! The stage thread turns records into BSON documents and hands them to a writer thread, which owns a
//! small current-thread tokio runtime and the driver's client. The writer batches documents into
//! `update` commands of upsert statements keyed by `key_fields` (a unique index on them is created at
//! start). Every MongoDB server and FerretDB 1.x accept `update`; the newer `bulkWrite` command needs
//! MongoDB 8.
//!
//! When a write fails for a reason that is not the document's own (no server, a restart, a timeout),
//! its documents are appended to the spool file and fsync'ed, and from then on every new document
//! goes behind them, so the order of updates is kept. The writer retries with backoff, drains the
//! spool in order and goes back to writing directly. A spool left over at the end of a run is drained
//! at the next start, before new records. Source acks ride with the documents and are dropped only
//! once those are written or spooled.
//!
//! A document the server refuses (a write error for that statement) is dead-lettered, so one bad
//! record cannot hold back the rest.

mod config;
mod document;
mod spool;
mod writer;

pub use config::{Acknowledgment, MongodbConfig, WriteConcernConfig};
pub use document::{document_id, redact_uri, to_bson, to_document};
pub use spool::{Spool, SpoolError};

use config::*;
use document::*;
use writer::*;

use crate::config::Duration;
use crate::record::{Ack, Batch, Value};
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use ::mongodb::error::{Error as DriverError, ErrorKind};
use ::mongodb::options::{ClientOptions, ConnectionString, IndexOptions};
use ::mongodb::{Client, IndexModel};
use bson::{doc, Bson, DateTime, Document};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use toml::Spanned;

/// The connection string used when neither `uri` nor `MONGODB_URI` is set.
pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27017";
/// Server selection and connect timeouts unless the URI sets its own, so a missing server is noticed
/// in seconds, not the driver's default 30.
const QUICK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// MongoDB's largest document; bigger ones are dead-lettered instead of failing a whole command.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024 - 16 * 1024;
/// Statement bytes per `update` command, well under the 48 MB message limit.
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;
/// Retry delays after a failed write: doubling from the first to the last.
const BACKOFF: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(5),
);
/// Statements per `update` command on FerretDB 1.x: it holds one SQLite connection per statement that
/// matched a document until the command ends, from a pool of 100 for the whole server, so a command
/// updating 100 existing documents never returns (v1.24.2, `msg_update.go`), nor do two sinks' commands
/// of 50 at once. 20 leaves room for several sinks (and their restarts' commands) at a time.
const FERRETDB1_MAX_STATEMENTS: usize = 20;
/// At a stop, how long the writer may take to let go of the server before the stage leaves it.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// At the end of a run, a server that failed this recently is not tried again (a run without a server
/// must not wait for it twice).
const RECENT_FAILURE: std::time::Duration = std::time::Duration::from_secs(3);
/// The running sink: converts records on the stage thread, writes on its own thread.
pub struct MongodbSink {
    settings: Arc<Settings>,
    writer: Option<WriterHandle>,
    /// Shared with the writer (see `Writer::stopping`).
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The spool's depth, shared with the writer thread that owns the spool (see `Spool::depth`).
    spool_depth: Option<Arc<std::sync::atomic::AtomicI64>>,
}

struct WriterHandle {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    thread: JoinHandle<Result<Summary, StageError>>,
    rejected: std::sync::mpsc::Receiver<Rejected>,
}

/// Documents of one batch and the source acks they hold.
struct Chunk {
    docs: Vec<Document>,
    acks: Vec<Ack>,
    /// Write (or spool) everything buffered now, for a checkpoint.
    flush: bool,
}

/// Tells the stage thread that the writer let go of a checkpoint's flush request, so everything sent
/// before it is written or spooled.
struct Flushed(std::sync::mpsc::Sender<()>);

impl Drop for Flushed {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A document the server refused: its Extended JSON text and why.
struct Rejected {
    line: String,
    reason: String,
}

/// Dead-letters the documents the server refused so far, naming where they were going.
fn dead_letter(settings: &Settings, rejected: &std::sync::mpsc::Receiver<Rejected>, out: &Output) {
    for r in rejected.try_iter() {
        let at =
            serde_json::json!({ "database": settings.database, "collection": settings.collection });
        out.dead_line(&r.line, at, &r.reason);
    }
}

impl MongodbSink {
    /// Copies the spool's depth into the stage's counters, for the metrics (once per batch: the spool
    /// lives on the writer's thread).
    fn show_spool(&self, out: &Output) {
        if let Some(depth) = &self.spool_depth {
            let n = depth.load(std::sync::atomic::Ordering::Relaxed);
            out.stats
                .spooled
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The writer's own error once it has stopped taking documents.
    fn writer_failed(&mut self) -> StageError {
        match self.writer.take().map(|w| w.thread.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => StageError::msg("the mongodb writer thread panicked"),
            _ => StageError::msg("the mongodb writer thread stopped early"),
        }
    }
}

impl Sink for MongodbSink {
    fn open(&mut self) -> Result<(), StageError> {
        let spool = Spool::open(&self.settings.spool_path)
            .map_err(|e| StageError::with("cannot keep a spool", e))?;
        self.spool_depth = Some(spool.depth());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let (rejected_tx, rejected) = std::sync::mpsc::channel();
        let settings = self.settings.clone();
        let stopping = self.stopping.clone();
        let thread = std::thread::Builder::new()
            .name(format!("stage-{}-mongodb", self.settings.stage))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        StageError::with("cannot start the mongodb writer's runtime", e)
                    })?;
                rt.block_on(async move {
                    match Writer::new(settings, spool, rejected_tx).await {
                        Ok(mut writer) => {
                            writer.stopping = stopping;
                            writer.run(rx).await
                        }
                        Err(e) => {
                            hold_queued(&mut rx);
                            Err(e)
                        }
                    }
                })
            })
            .map_err(|e| StageError::with("cannot start the mongodb writer thread", e))?;
        self.writer = Some(WriterHandle {
            tx,
            thread,
            rejected,
        });
        Ok(())
    }

    fn write(&mut self, batch: &Batch, out: &mut Output) -> Result<(), StageError> {
        self.show_spool(out);
        if let Some(w) = &self.writer {
            dead_letter(&self.settings, &w.rejected, out);
        }
        if out.stopping() {
            // A write in flight is abandoned: the stop's checkpoint must not wait for the server.
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let missing = self
            .settings
            .key_fields
            .iter()
            .find(|f| batch.column(f).is_none());
        let mut docs = Vec::with_capacity(batch.len);
        for row in 0..batch.len {
            if let Some(f) = missing {
                out.dead_row(
                    batch,
                    row,
                    &format!("missing key field `{f}`; check `key_fields`"),
                );
                continue;
            }
            let doc = to_document(batch, row, &self.settings.key_fields);
            match doc.to_vec().map(|v| v.len()) {
                Ok(n) if n <= MAX_DOCUMENT_BYTES => docs.push(doc),
                Ok(n) => out.dead_row(
                    batch,
                    row,
                    &format!("the document is {n} bytes, over MongoDB's 16 MiB limit"),
                ),
                Err(e) => out.dead_row(
                    batch,
                    row,
                    &format!("cannot encode the document as BSON: {e}"),
                ),
            }
        }
        if docs.is_empty() {
            return Ok(());
        }
        let chunk = Chunk {
            docs,
            acks: batch.acks.clone(),
            flush: false,
        };
        if let Err(unsent) = self
            .writer
            .as_ref()
            .expect("opened")
            .tx
            .blocking_send(chunk)
        {
            hold_forever(unsent.0.acks);
            return Err(self.writer_failed());
        }
        Ok(())
    }

    /// Everything sent so far is written or, with the server down or slow past `timeout`, in the
    /// fsync'ed spool: either way a restart finds it. Upserts are idempotent, so documents a restart
    /// computes again are simply written again; nothing to restore.
    fn checkpoint(&mut self, out: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        self.show_spool(out);
        let (tx, rx) = std::sync::mpsc::channel();
        let chunk = Chunk {
            docs: Vec::new(),
            acks: vec![Ack::new(Flushed(tx))],
            flush: true,
        };
        let w = self.writer.as_ref().expect("opened");
        if out.stopping() {
            // The stop's last checkpoint: a write in flight is abandoned rather than waited for.
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if let Err(unsent) = w.tx.blocking_send(chunk) {
            drop(unsent);
            return Err(self.writer_failed());
        }
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(()) => break,
                Err(_) if self.writer.as_ref().is_some_and(|w| w.thread.is_finished()) => {
                    return Err(self.writer_failed());
                }
                Err(_) => {}
            }
        }
        if let Some(w) = &self.writer {
            dead_letter(&self.settings, &w.rejected, out);
        }
        Ok(None)
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        let Some(WriterHandle {
            tx,
            thread,
            rejected,
        }) = self.writer.take()
        else {
            return Ok(());
        };
        drop(tx);
        if out.stopping() {
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // The stop's checkpoint put every document before it in the spool, so a writer still busy
            // with the server holds nothing that is not on disk: the stop does not wait for it.
            let until = Instant::now() + STOP_GRACE;
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !thread.is_finished() {
                out.stats.set_note(format!(
                    "stopped while writing to {}.{}; what was not written is in {} (written at the next start)",
                    self.settings.database,
                    self.settings.collection,
                    self.settings.spool_path.display()
                ));
                return Ok(());
            }
        }
        let result = thread.join();
        dead_letter(&self.settings, &rejected, out);
        let summary = match result {
            Ok(r) => r?,
            Err(_) => return Err(StageError::msg("the mongodb writer thread panicked")),
        };
        out.stats.set_note(summary.describe(&self.settings));
        self.show_spool(out);
        Ok(())
    }
}

/// What the writer did in a run, for the run summary.
#[derive(Debug, Default)]
struct Summary {
    written: u64,
    /// Spooled documents handled (written or dead-lettered), from this run or an earlier one.
    from_spool: u64,
    /// Documents this run passed through the spool only to keep the stage and checkpoints moving
    /// (not because the server failed); not reported as spooled.
    buffered: u64,
    /// Documents that went through the spool in this run.
    spooled: u64,
    /// Documents still in the spool at the end.
    left: usize,
    unreachable: bool,
}

impl Summary {
    fn describe(&self, s: &Settings) -> String {
        let mut note = format!(
            "{} document(s) written to {}.{} at {}",
            self.written, s.database, s.collection, s.shown_uri
        );
        let from_spool = self.from_spool.saturating_sub(self.buffered);
        if from_spool > 0 {
            note.push_str(&format!(" ({from_spool} from the spool)"));
        }
        if self.left > 0 {
            let why = if self.unreachable {
                "MongoDB is unreachable; "
            } else {
                ""
            };
            note.push_str(&format!(
                "; {} document(s) spooled in {} ({why}written at the next start)",
                self.left,
                s.spool_path.display()
            ));
        } else if self.spooled > 0 {
            note.push_str(&format!(
                "; {} spooled while MongoDB was unreachable, all written since",
                self.spooled
            ));
        }
        note
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use crate::record::{Column, Origin};
    use std::path::Path;

    fn parse(fields: &str) -> Result<String, String> {
        let text = format!(
            "[stages.events]\ntype = \"replay\"\npath = \"x.jsonl\"\n\n[stages.store]\ntype = \"mongodb\"\ninputs = [\"events\"]\n{fields}\n"
        );
        let p = Pipeline::parse(Path::new("p.toml"), text).map_err(|d| d.to_string())?;
        Ok(format!("{:?}", p.stages[1].config))
    }

    #[test]
    fn config_fields_parse_and_typos_are_refused() {
        let names = "database = \"db\"\ncollection = \"c\"\n";
        let full = parse(&format!(
            "{names}uri = \"mongodb://h:1\"\nkey_fields = [\"id\"]\nbatch_size = 10\nflush_interval = \"250ms\"\ntimeout = \"5s\"\nspool = \"s\"\ndrain_timeout = \"1s\"\nwrite_concern = {{ w = \"majority\", journal = true, timeout = \"2s\" }}"
        ))
        .unwrap();
        assert!(
            full.contains("Named(\"majority\")") && full.contains("journal: Some(true)"),
            "{full}"
        );
        assert!(parse(&format!("{names}write_concern = {{ w = 2 }}"))
            .unwrap()
            .contains("Nodes(2)"));
        let typo = parse(&format!("{names}colection = \"x\"")).unwrap_err();
        assert!(typo.contains("unknown field `colection`"), "{typo}");
        let missing = parse("database = \"db\"").unwrap_err();
        assert!(missing.contains("missing field `collection`"), "{missing}");
    }

    #[test]
    fn documents_are_typed() {
        let batch = Batch {
            len: 1,
            time: vec![0],
            origin: vec![Origin::default()],
            columns: [
                ("window_start", Value::Time(1_717_243_200_000)),
                ("genre", Value::Str("Jazz/Big Band".into())),
                ("avg", Value::Float(1_936_000_000.0)),
                ("count", Value::Int(3)),
                ("ok", Value::Bool(true)),
                ("none", Value::Null),
                (
                    "meta",
                    Value::Json(r#"{"tags":["a",1,2.5],"$date":"kept as a key"}"#.into()),
                ),
            ]
            .into_iter()
            .map(|(n, v)| Column::new(n, crate::record::column::from_values(&[v])))
            .collect(),
            acks: Vec::new(),
        };
        let d = to_document(&batch, 0, &["window_start".into(), "none".into()]);
        let expected = doc! {
            "window_start": DateTime::from_millis(1_717_243_200_000),
            "genre": "Jazz/Big Band",
            "avg": 1_936_000_000.0_f64,
            "count": 3_i64,
            "ok": true,
            "none": Bson::Null,
            "meta": { "tags": ["a", 1_i64, 2.5], "$date": "kept as a key" },
        };
        assert_eq!(d, expected);
        // Field order is the record's, and the BSON element types are the ones asked for.
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            [
                "window_start",
                "genre",
                "avg",
                "count",
                "ok",
                "none",
                "meta"
            ]
        );
        assert!(matches!(d.get("count"), Some(Bson::Int64(3))));
        assert!(matches!(d.get("avg"), Some(Bson::Double(_))));
        assert!(matches!(d.get("meta"), Some(Bson::Document(_))));
        // A null outside the key is left out.
        let d = to_document(&batch, 0, &["window_start".into()]);
        assert!(!d.contains_key("none") && d.len() == 6, "{d}");

        let filter = key_filter(
            &d,
            &["window_start".into(), "genre".into(), "missing".into()],
        );
        assert_eq!(
            filter,
            doc! { "window_start": DateTime::from_millis(1_717_243_200_000), "genre": "Jazz/Big Band", "missing": Bson::Null }
        );
    }

    /// Sets its flag when dropped: stands for a source's progress token.
    struct Token(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn acks_are_released_once_the_documents_are_spooled() {
        let dir = std::env::temp_dir().join(format!("tributary-acks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool_path = dir.join("store.jsonl");
        // Nothing listens on port 1: every write fails at once.
        let uri = "mongodb://u:pw@127.0.0.1:1/?serverSelectionTimeoutMS=200".to_string();
        let settings = Arc::new(Settings {
            stage: "store".into(),
            shown_uri: redact_uri(&uri),
            secrets: uri_secrets(&uri),
            uri,
            database: "db".into(),
            collection: "c".into(),
            key_fields: vec!["k".into()],
            batch_size: 10,
            flush_interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(5),
            write_concern: None,
            spool_path: spool_path.clone(),
            drain_timeout: std::time::Duration::from_secs(1),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, _rx) = std::sync::mpsc::channel();
            let spool = Spool::open(&spool_path).unwrap();
            let mut w = Writer::new(settings, spool, tx).await.unwrap();
            let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
            w.pending.push(Chunk {
                flush: false,
                docs: vec![doc! { "k": 1_i64, "v": "a" }, doc! { "k": 2_i64, "v": "b" }],
                acks: vec![Ack::new(Token(released.clone()))],
            });
            w.pending_docs = 2;
            assert!(!released.load(std::sync::atomic::Ordering::SeqCst));
            w.flush().await.unwrap();
            assert!(
                released.load(std::sync::atomic::Ordering::SeqCst),
                "spooled: the ack goes"
            );
            assert_eq!(w.spool.pending(), 2);
            assert!(matches!(w.link, Link::Down { .. }));
            let summary = w.shutdown().await.unwrap();
            assert_eq!((summary.written, summary.left), (0, 2));
            assert!(
                !summary.describe(&w.s).contains("pw"),
                "{}",
                summary.describe(&w.s)
            );
        });
        assert_eq!(
            std::fs::read_to_string(&spool_path)
                .unwrap()
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn uris_lose_their_secrets() {
        let uri = "mongodb://app:p%40ss:w0rd@db1:27017,db2/admin?authSource=admin&tlsCertificateKeyFilePassword=hunter2&w=majority";
        let shown = redact_uri(uri);
        assert_eq!(shown, "mongodb://app:***@db1:27017,db2/admin?authSource=admin&tlsCertificateKeyFilePassword=***&w=majority");
        let secrets = uri_secrets(uri);
        let msg = scrub(
            "auth failed for app with p@ss:w0rd, p%40ss:w0rd and hunter2",
            &secrets,
        );
        assert_eq!(msg, "auth failed for app with ***, *** and ***");
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
        assert_eq!(
            redact_uri("mongodb://user@host/?authMechanism=MONGODB-X509"),
            "mongodb://user@host/?authMechanism=MONGODB-X509"
        );
        assert_eq!(
            redact_uri("garbage with secret"),
            "<not a connection string>"
        );
        assert!(uri_secrets("mongodb://host").is_empty());
    }

    #[test]
    fn write_concern_document() {
        let wc = WriteConcernConfig {
            w: Some(Spanned::new(0..0, Acknowledgment::Named("majority".into()))),
            journal: Some(true),
            timeout: Some(Duration(5000)),
        };
        assert_eq!(
            wc.document().unwrap(),
            Some(doc! { "w": "majority", "j": true, "wtimeout": 5000_i64 })
        );
        assert_eq!(WriteConcernConfig::default().document().unwrap(), None);
        let zero = WriteConcernConfig {
            w: Some(Spanned::new(0..0, Acknowledgment::Nodes(0))),
            ..Default::default()
        };
        assert!(zero.document().unwrap_err().message.contains("at least 1"));
    }
}
