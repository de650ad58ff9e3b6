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

mod spool;

pub use spool::{Spool, SpoolError};

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
/// matched a document until the command ends, from a pool of 100, so a command updating 100 existing
/// documents never returns (v1.24.2, `msg_update.go`).
const FERRETDB1_MAX_STATEMENTS: usize = 50;
/// At the end of a run, a server that failed this recently is not tried again (a run without a server
/// must not wait for it twice).
const RECENT_FAILURE: std::time::Duration = std::time::Duration::from_secs(3);

/// Upserts each record into a MongoDB collection as a typed document: one document per value of
/// `key_fields`, replaced when a record with the same key arrives (a window updated by late data).
/// Timestamps become BSON dates, floats doubles, integers 64-bit integers, strings strings, JSON values
/// sub-documents or arrays; null fields are left out, except key fields. While the server cannot be
/// reached, records are kept in a spool file and written when it is back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbConfig {
    /// The connection string, like `mongodb://user:password@db.example.com:27017/?authSource=admin`.
    /// Default: the `MONGODB_URI` environment variable, else `mongodb://127.0.0.1:27017`. Unless the
    /// URI sets `serverSelectionTimeoutMS` or `connectTimeoutMS`, they are 2 s, so a missing server is
    /// noticed quickly. TLS works (`tls=true`); `mongodb+srv://` does not (use the standard form of the
    /// connection string). The password is never shown in messages.
    pub uri: Option<Spanned<String>>,
    /// The database, like `tributary`.
    pub database: Spanned<String>,
    /// The collection, like `avg_streams_per_genre`.
    pub collection: Spanned<String>,
    /// The fields that identify a document: a record replaces the document holding the same values in
    /// these fields, or is inserted, so replaying records never duplicates a document. A unique index
    /// on them is created at start. Default: the key of the window stage this sink reads
    /// (`window_start`, `window_end` and the stage's `key`); required when the input is not a window
    /// stage. A record without one of these fields is dead-lettered; a null value is a value (a
    /// global window's bounds are null).
    pub key_fields: Option<Spanned<Vec<String>>>,
    /// Documents written together: a write starts once this many wait, and one `update` command
    /// carries at most this many (at most 50 against FerretDB 1.x, which hangs on commands updating
    /// 100 existing documents). 1 to 100000. Default 1000.
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<usize>,
    /// Records are written at least this often, even when fewer than `batch_size` are waiting.
    /// Default `1s`.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Spanned<Duration>,
    /// How long one write command may take before it counts as failed: its records are then spooled
    /// and retried, so a server that hangs cannot stall the pipeline. Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Duration>,
    /// The acknowledgement asked of the server for each write, like `{ w = "majority", journal = true,
    /// timeout = "10s" }`. Default: the server's default write concern.
    #[serde(default)]
    pub write_concern: WriteConcernConfig,
    /// The directory of the spool file `<stage>.jsonl`, relative to the pipeline file. Records wait
    /// there, in order, while the server cannot be reached; the file is emptied once they are written.
    /// Default `out/spool`.
    #[serde(default = "default_spool")]
    pub spool: PathBuf,
    /// How long the end of a run may spend writing spooled records to a server that answers before it
    /// leaves them for the next start. Default `5s`.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
}

/// `write_concern = { ... }`: how sure the server must be of a write before it answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteConcernConfig {
    /// How many replica set members must have the write: a number (at least 1), `"majority"` or a
    /// custom write concern name. Default: the server's.
    pub w: Option<Spanned<Acknowledgment>>,
    /// Wait until the write is in the on-disk journal (`j`). Default: the server's.
    pub journal: Option<bool>,
    /// Give up waiting for the acknowledgement after this long (`wtimeout`); the records are then
    /// spooled and retried. Default: no limit.
    pub timeout: Option<Duration>,
}

/// The `w` of a write concern.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Acknowledgment {
    Nodes(i64),
    Named(String),
}

fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 1000)
}
fn default_flush_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(1000))
}
fn default_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(30_000))
}
fn default_spool() -> PathBuf {
    PathBuf::from("out/spool")
}
fn default_drain_timeout() -> Duration {
    Duration(5000)
}

/// Checked settings, shared by the stage and its writer thread.
#[derive(Debug)]
struct Settings {
    stage: Arc<str>,
    /// The connection string as given, with its secrets: only for the driver.
    uri: String,
    /// The connection string for messages.
    shown_uri: String,
    /// Secrets to blank out of driver messages.
    secrets: Vec<String>,
    database: String,
    collection: String,
    key_fields: Vec<String>,
    batch_size: usize,
    flush_interval: std::time::Duration,
    timeout: std::time::Duration,
    write_concern: Option<Document>,
    spool_path: PathBuf,
    drain_timeout: std::time::Duration,
}

impl StageConfig for MongodbConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let (uri, origin) = match &self.uri {
            Some(u) => (u.get_ref().clone(), "`uri`"),
            None => match std::env::var("MONGODB_URI") {
                Ok(u) if !u.trim().is_empty() => (u, "the `MONGODB_URI` environment variable"),
                _ => (DEFAULT_URI.to_string(), "the default `uri`"),
            },
        };
        let shown_uri = redact_uri(&uri);
        let secrets = uri_secrets(&uri);
        if let Err(e) = ConnectionString::parse(&uri) {
            let reason = scrub(&e.kind.to_string(), &secrets);
            // Anchored at the stage, not at the value: the message quotes the line it points at, and
            // that line holds the password.
            return Err(BuildError::new(
                None,
                format!("{origin} `{shown_uri}` is not a MongoDB connection string: {reason}; write it like `{DEFAULT_URI}`"),
            ));
        }
        check_name(
            &self.database,
            "database",
            &['/', '\\', '.', ' ', '"', '$', '\0'],
        )?;
        check_name(&self.collection, "collection", &['$', '\0'])?;
        if self.collection.get_ref().starts_with("system.") {
            return Err(BuildError::new(
                Some(self.collection.span()),
                "`collection` must not start with `system.`: those names belong to the server",
            ));
        }
        let key_fields = match &self.key_fields {
            Some(k) => {
                if k.get_ref().is_empty() {
                    return Err(BuildError::new(
                        Some(k.span()),
                        "`key_fields` is empty; list the fields that identify a document, like `[\"window_start\", \"window_end\", \"genre\"]`",
                    ));
                }
                if let Some(f) = k
                    .get_ref()
                    .iter()
                    .find(|f| f.is_empty() || f.starts_with('$') || f.contains('.'))
                {
                    return Err(BuildError::new(
                        Some(k.span()),
                        format!("key field `{f}` is not a top-level field name; names must be non-empty, without `.` and not start with `$`"),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(f) = k.get_ref().iter().find(|f| !seen.insert(f.as_str())) {
                    return Err(BuildError::new(
                        Some(k.span()),
                        format!("`key_fields` lists `{f}` twice"),
                    ));
                }
                k.get_ref().clone()
            }
            None => default_key_fields(ctx)?,
        };
        let batch_size = *self.batch_size.get_ref();
        if !(1..=100_000).contains(&batch_size) {
            return Err(BuildError::new(
                Some(self.batch_size.span()),
                "`batch_size` must be between 1 and 100000",
            ));
        }
        let flush = self.flush_interval.get_ref().millis();
        if flush <= 0 {
            return Err(BuildError::new(
                Some(self.flush_interval.span()),
                "`flush_interval` must be longer than 0, like `1s`",
            ));
        }
        if self.timeout.get_ref().millis() <= 0 {
            return Err(BuildError::new(
                Some(self.timeout.span()),
                "`timeout` must be longer than 0, like `30s`",
            ));
        }
        let write_concern = self.write_concern.document()?;
        let spool_path = ctx.path(&self.spool).join(format!("{}.jsonl", ctx.stage));
        let settings = Settings {
            stage: ctx.stage.into(),
            uri,
            shown_uri,
            secrets,
            database: self.database.get_ref().clone(),
            collection: self.collection.get_ref().clone(),
            key_fields,
            batch_size,
            flush_interval: millis(flush),
            timeout: millis(self.timeout.get_ref().millis()),
            write_concern,
            spool_path,
            drain_timeout: millis(self.drain_timeout.millis()),
        };
        Ok(Built::Sink(Box::new(MongodbSink {
            settings: Arc::new(settings),
            writer: None,
        })))
    }
}

fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(ms.max(0) as u64)
}

fn check_name(name: &Spanned<String>, field: &str, forbidden: &[char]) -> Result<(), BuildError> {
    let n = name.get_ref();
    if n.is_empty() {
        return Err(BuildError::new(
            Some(name.span()),
            format!("`{field}` is empty; name the {field}"),
        ));
    }
    if let Some(c) = n.chars().find(|c| forbidden.contains(c)) {
        return Err(BuildError::new(
            Some(name.span()),
            format!(
                "`{field}` `{n}` contains {c:?}, which MongoDB does not allow in a {field} name"
            ),
        ));
    }
    Ok(())
}

/// The key of the window stage(s) this sink reads, when they agree.
fn default_key_fields(ctx: &BuildContext<'_>) -> Result<Vec<String>, BuildError> {
    let stage = ctx
        .pipeline
        .stages
        .iter()
        .find(|s| s.name == ctx.stage)
        .expect("the stage being built exists");
    let mut key: Option<Vec<String>> = None;
    for input in &stage.inputs {
        let up = ctx
            .pipeline
            .stages
            .iter()
            .find(|s| &s.name == input.get_ref());
        let Some(fields) = up.and_then(|s| s.config.output_key()) else {
            return Err(BuildError::new(
                Some(stage.name_span.clone()),
                format!(
                    "add `key_fields`: input `{}` is not a window stage, so the fields that identify a document are not known; list them, like `key_fields = [\"id\"]`",
                    input.get_ref()
                ),
            ));
        };
        match &key {
            Some(k) if *k != fields => {
                return Err(BuildError::new(
                    Some(stage.name_span.clone()),
                    format!(
                        "add `key_fields`: the inputs' windows have different keys ({} and {})",
                        k.join(", "),
                        fields.join(", ")
                    ),
                ))
            }
            _ => key = Some(fields),
        }
    }
    key.ok_or_else(|| {
        BuildError::new(
            Some(stage.name_span.clone()),
            "add `key_fields`: this stage has no inputs",
        )
    })
}

impl WriteConcernConfig {
    /// The `writeConcern` document of each `update` command, if anything was set.
    fn document(&self) -> Result<Option<Document>, BuildError> {
        let mut d = Document::new();
        if let Some(w) = &self.w {
            match w.get_ref() {
                Acknowledgment::Nodes(n) if *n < 1 => {
                    return Err(BuildError::new(
                        Some(w.span()),
                        "`write_concern.w` must be at least 1: with `w = 0` the server does not answer, so a lost write would go unnoticed",
                    ))
                }
                Acknowledgment::Nodes(n) => d.insert("w", *n),
                Acknowledgment::Named(name) => d.insert("w", name.as_str()),
            };
        }
        if let Some(j) = self.journal {
            d.insert("j", j);
        }
        if let Some(t) = self.timeout {
            d.insert("wtimeout", t.millis());
        }
        Ok(if d.is_empty() { None } else { Some(d) })
    }
}

/// The running sink: converts records on the stage thread, writes on its own thread.
pub struct MongodbSink {
    settings: Arc<Settings>,
    writer: Option<WriterHandle>,
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let (rejected_tx, rejected) = std::sync::mpsc::channel();
        let settings = self.settings.clone();
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
                        Ok(writer) => writer.run(rx).await,
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
        if let Some(w) = &self.writer {
            dead_letter(&self.settings, &w.rejected, out);
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
        let result = thread.join();
        dead_letter(&self.settings, &rejected, out);
        let summary = match result {
            Ok(r) => r?,
            Err(_) => return Err(StageError::msg("the mongodb writer thread panicked")),
        };
        out.stats.set_note(summary.describe(&self.settings));
        Ok(())
    }
}

/// What the writer did in a run, for the run summary.
#[derive(Debug, Default)]
struct Summary {
    written: u64,
    /// Spooled documents handled (written or dead-lettered), from this run or an earlier one.
    from_spool: u64,
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
        if self.from_spool > 0 {
            note.push_str(&format!(" ({} from the spool)", self.from_spool));
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

/// Whether the server was reachable at the last attempt.
#[derive(Debug)]
enum Link {
    Up,
    Down {
        retry_at: Instant,
        backoff: std::time::Duration,
        failed_at: Instant,
    },
}

/// A write that stopped because the server could not take it (not because of a document): the
/// documents from `done` on were not written.
struct Unavailable {
    done: usize,
    reason: String,
}

/// The writer thread's state: client, spool, buffered documents and their acks.
struct Writer {
    s: Arc<Settings>,
    client: Client,
    spool: Spool,
    pending: Vec<Chunk>,
    pending_docs: usize,
    oldest: Option<Instant>,
    link: Link,
    /// The server was asked what it is and the unique index was made (or refused).
    ready: bool,
    /// Documents are identified by `_id` = their key fields (a point write on any server); false for a
    /// collection that holds documents an older tributary wrote with ObjectId `_id`s.
    by_id: bool,
    /// Statements per `update` command: `batch_size`, less on FerretDB 1.x.
    statements: usize,
    /// At the end of a run: attempts stop here, and a server that just failed is not tried again.
    deadline: Option<Instant>,
    rejected: std::sync::mpsc::Sender<Rejected>,
    summary: Summary,
    /// How long the driver waits for a server, for messages.
    selection_timeout: std::time::Duration,
}

impl Writer {
    async fn new(
        s: Arc<Settings>,
        spool: Spool,
        rejected: std::sync::mpsc::Sender<Rejected>,
    ) -> Result<Writer, StageError> {
        let mut options = ClientOptions::parse(s.uri.as_str()).await.map_err(|e| {
            StageError::msg(format!(
                "`uri` `{}` cannot be used: {}",
                s.shown_uri,
                scrub(&e.to_string(), &s.secrets)
            ))
        })?;
        options.app_name.get_or_insert_with(|| "tributary".into());
        let selection_timeout = *options
            .server_selection_timeout
            .get_or_insert(QUICK_TIMEOUT);
        options.connect_timeout.get_or_insert(QUICK_TIMEOUT);
        let client = Client::with_options(options).map_err(|e| {
            StageError::msg(format!(
                "cannot set up a client for `{}`: {}",
                s.shown_uri,
                scrub(&e.to_string(), &s.secrets)
            ))
        })?;
        let batch_size = s.batch_size;
        Ok(Writer {
            s,
            client,
            spool,
            pending: Vec::new(),
            pending_docs: 0,
            oldest: None,
            link: Link::Up,
            ready: false,
            by_id: false,
            statements: batch_size,
            deadline: None,
            rejected,
            summary: Summary::default(),
            selection_timeout,
        })
    }

    async fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<Summary, StageError> {
        if let Err(e) = self.work(&mut rx).await {
            // Failed: what is still buffered or queued was neither written nor spooled.
            hold_queued(&mut rx);
            for chunk in std::mem::take(&mut self.pending) {
                hold_forever(chunk.acks);
            }
            return Err(e);
        }
        self.shutdown().await.map_err(spool_failed)
    }

    /// Takes documents until the input ends.
    async fn work(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<(), StageError> {
        self.start().await.map_err(spool_failed)?;
        loop {
            let wake = self
                .next_wake()
                .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                () = tokio::time::sleep_until(wake.into()) => {
                    self.flush().await.map_err(spool_failed)?;
                    continue;
                }
            };
            let Some(chunk) = msg else { break };
            self.pending_docs += chunk.docs.len();
            self.pending.push(chunk);
            self.oldest.get_or_insert_with(Instant::now);
            if self.pending_docs >= self.s.batch_size {
                self.flush().await.map_err(spool_failed)?;
            }
        }
        Ok(())
    }

    /// Connects, creates the index, and writes what an earlier run left in the spool.
    async fn start(&mut self) -> Result<(), SpoolError> {
        if let Err(u) = self.ensure_ready().await {
            self.down(u.reason);
        }
        if self.spool.pending() > 0 && matches!(self.link, Link::Up) {
            eprintln!(
                "tributary: stage `{}`: writing {} document(s) spooled by an earlier run in {}",
                self.s.stage,
                self.spool.pending(),
                self.spool.path().display()
            );
            self.drain().await?;
        }
        Ok(())
    }

    /// When the loop must wake without a message: to flush the buffer, or to retry the spool.
    fn next_wake(&self) -> Option<Instant> {
        let flush = self.oldest.map(|t| t + self.s.flush_interval);
        let retry = match (&self.link, self.spool.pending()) {
            (_, 0) => None,
            (Link::Down { retry_at, .. }, _) => Some(*retry_at),
            (Link::Up, _) => Some(Instant::now()),
        };
        flush.into_iter().chain(retry).min()
    }

    /// Whether a write may be attempted now.
    fn may_try(&self) -> bool {
        match &self.link {
            Link::Up => true,
            Link::Down { failed_at, .. } if self.deadline.is_some() => {
                failed_at.elapsed() >= RECENT_FAILURE
            }
            Link::Down { retry_at, .. } => Instant::now() >= *retry_at,
        }
    }

    /// Writes (or spools) the buffered documents, draining the spool first when a retry is due. The
    /// buffered acks are dropped at the end: every document is then written, spooled or dead-lettered.
    async fn flush(&mut self) -> Result<(), SpoolError> {
        if self.spool.pending() > 0 && self.may_try() {
            self.drain().await?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.pending);
        self.pending_docs = 0;
        self.oldest = None;
        let mut docs = Vec::new();
        let mut acks = Vec::new();
        for c in chunks {
            docs.extend(c.docs);
            Ack::merge_into(&mut acks, &c.acks);
        }
        let spooled = if self.spool.pending() == 0 && self.may_try() {
            match self.upsert(&docs).await {
                Ok(()) => Ok(()),
                Err(u) => {
                    self.down(u.reason);
                    self.spool_docs(&docs[u.done..])
                }
            }
        } else {
            self.spool_docs(&docs)
        };
        match spooled {
            Ok(()) => drop(acks),
            Err(e) => {
                hold_forever(acks);
                return Err(e);
            }
        }
        Ok(())
    }

    fn spool_docs(&mut self, docs: &[Document]) -> Result<(), SpoolError> {
        let n = self.spool.append(docs)?;
        self.summary.spooled += n as u64;
        Ok(())
    }

    /// Writes spooled documents in order until the spool is empty, the server fails, or the deadline.
    async fn drain(&mut self) -> Result<(), SpoolError> {
        while self.spool.pending() > 0 {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let entries = self.spool.peek(self.s.batch_size)?;
            if entries.is_empty() {
                break;
            }
            let docs: Vec<Document> = entries.iter().map(|(d, _)| d.clone()).collect();
            let result = self.upsert(&docs).await;
            let done = result.as_ref().map_or_else(|u| u.done, |()| docs.len());
            if done > 0 {
                self.spool.consumed(entries[done - 1].1, done);
                self.summary.from_spool += done as u64;
            }
            if let Err(u) = result {
                self.down(u.reason);
                break;
            }
        }
        self.spool.clear_if_drained()
    }

    /// Runs a command within `timeout`.
    async fn command(&self, db: &str, command: Document) -> Result<Document, String> {
        let db = self.client.database(db);
        match tokio::time::timeout(self.s.timeout, db.run_command(command)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.describe(&e)),
            Err(_) => Err(format!("no answer within {:?}", self.s.timeout)),
        }
    }

    /// Once the server answers: learns whether it is FerretDB 1.x and creates the unique index on the
    /// key fields. A server that refuses the index (say, existing duplicates) is reported and writing
    /// goes on; a server that cannot be reached is retried.
    async fn ensure_ready(&mut self) -> Result<(), Unavailable> {
        if self.ready {
            return Ok(());
        }
        let info = self
            .command("admin", doc! { "buildInfo": 1 })
            .await
            .map_err(|reason| Unavailable { done: 0, reason })?;
        if info
            .get_str("ferretdbVersion")
            .is_ok_and(|v| v.trim_start_matches('v').starts_with("1."))
        {
            self.statements = self.s.batch_size.min(FERRETDB1_MAX_STATEMENTS);
        }
        let mut keys = Document::new();
        for f in &self.s.key_fields {
            keys.insert(f.as_str(), 1);
        }
        let model = IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().unique(true).build())
            .build();
        let coll = self
            .client
            .database(&self.s.database)
            .collection::<Document>(&self.s.collection);
        let created = match tokio::time::timeout(self.s.timeout, coll.create_index(model)).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Unavailable {
                    done: 0,
                    reason: format!("no answer within {:?}", self.s.timeout),
                })
            }
        };
        // Documents an older tributary wrote carry ObjectId `_id`s: replacing them by a key `_id` is
        // impossible (`_id` is immutable), so such a collection keeps being upserted by its key fields.
        let legacy = match tokio::time::timeout(
            self.s.timeout,
            coll.find_one(doc! { "_id": { "$type": "objectId" } }),
        )
        .await
        {
            Ok(Ok(found)) => found.is_some(),
            Ok(Err(e)) if matches!(*e.kind, ErrorKind::Command(_)) => true,
            Ok(Err(e)) => {
                return Err(Unavailable {
                    done: 0,
                    reason: self.describe(&e),
                })
            }
            Err(_) => {
                return Err(Unavailable {
                    done: 0,
                    reason: format!("no answer within {:?}", self.s.timeout),
                })
            }
        };
        self.by_id = !legacy;
        if legacy {
            eprintln!(
                "warning: stage `{}`: {}.{} holds documents with ObjectId `_id`s (written by an older tributary); upserting by {} instead of by `_id`, which is slower; to move to key `_id`s, empty the collection and run again",
                self.s.stage,
                self.s.database,
                self.s.collection,
                self.s.key_fields.join(", ")
            );
        }
        match created {
            Ok(_) => self.ready = true,
            Err(e) if matches!(*e.kind, ErrorKind::Command(_)) => {
                eprintln!(
                    "warning: stage `{}`: cannot create the unique index on {} in {}.{}: {}; writing goes on, but documents written by others may duplicate keys",
                    self.s.stage,
                    self.s.key_fields.join(", "),
                    self.s.database,
                    self.s.collection,
                    self.describe(&e)
                );
                self.ready = true;
            }
            Err(e) => {
                return Err(Unavailable {
                    done: 0,
                    reason: self.describe(&e),
                })
            }
        }
        Ok(())
    }

    /// Upserts `docs` in order, `statements` statements (and at most `MAX_COMMAND_BYTES`) a command.
    /// Documents the server refuses are dead-lettered. On any other failure, says how many leading
    /// documents were handled.
    async fn upsert(&mut self, docs: &[Document]) -> Result<(), Unavailable> {
        self.ensure_ready().await?;
        let mut i = 0;
        // After a refused statement, the statements of that command go again one a command, up to here.
        let mut singly_until = 0;
        while i < docs.len() {
            let start = i;
            let limit = if i < singly_until { 1 } else { self.statements };
            let mut updates = Vec::new();
            let mut bytes = 0;
            while i < docs.len()
                && updates.len() < limit
                && (updates.is_empty() || bytes < MAX_COMMAND_BYTES)
            {
                bytes += docs[i].to_vec().map_or(0, |v| v.len());
                updates.push(Bson::Document(self.statement(&docs[i])));
                i += 1;
            }
            let n = updates.len();
            let mut command =
                doc! { "update": self.s.collection.as_str(), "updates": updates, "ordered": true };
            if let Some(wc) = &self.s.write_concern {
                command.insert("writeConcern", wc.clone());
            }
            let reply = self
                .command(&self.s.database, command)
                .await
                .map_err(|reason| Unavailable {
                    done: start,
                    reason,
                })?;
            if let Ok(wce) = reply.get_document("writeConcernError") {
                let msg = wce.get_str("errmsg").unwrap_or("no message");
                return Err(Unavailable {
                    done: start,
                    reason: format!("the write concern was not met: {msg}"),
                });
            }
            // A refused statement: the `index` MongoDB reports is not to be trusted everywhere (FerretDB 1.x
            // says 0 and may have applied the statements before it), so the command's statements go again
            // one a command; upserts are idempotent and keep their order. Alone, the refusal is the
            // document's own: it is dead-lettered.
            let refused = reply
                .get_array("writeErrors")
                .ok()
                .and_then(|errors| errors.first())
                .and_then(Bson::as_document);
            match refused {
                Some(_) if n > 1 => {
                    singly_until = i;
                    i = start;
                }
                Some(err) => {
                    let code = err.get("code").map(ToString::to_string).unwrap_or_default();
                    let msg = err.get_str("errmsg").unwrap_or("no message");
                    self.reject(
                        &docs[start],
                        format!("MongoDB refused the document (code {code}): {msg}"),
                    );
                }
                None => self.summary.written += n as u64,
            }
        }
        if let Link::Down { .. } = self.link {
            let spooled = match self.spool.pending() {
                0 => String::new(),
                n => format!(
                    "; writing {n} spooled document(s) from {}",
                    self.spool.path().display()
                ),
            };
            eprintln!(
                "tributary: stage `{}`: MongoDB at {} is reachable again{spooled}",
                self.s.stage, self.s.shown_uri
            );
        }
        self.link = Link::Up;
        Ok(())
    }

    /// One upsert statement: replace the document with this key, or insert it. The key is the `_id`
    /// (a sub-document of the key fields), so the server finds the document by its primary key.
    fn statement(&self, d: &Document) -> Document {
        let key = key_filter(d, &self.s.key_fields);
        // A record with an `_id` of its own keeps it; its key fields find it.
        if !self.by_id || d.contains_key("_id") {
            return doc! { "q": key, "u": d.clone(), "upsert": true, "multi": false };
        }
        let id = document_id(&key);
        let mut u = doc! { "_id": id.clone() };
        u.extend(d.clone());
        doc! { "q": { "_id": id }, "u": u, "upsert": true, "multi": false }
    }

    fn reject(&self, d: &Document, reason: String) {
        let line = serde_json::to_string(&Bson::Document(d.clone()).into_canonical_extjson())
            .expect("JSON serialises");
        let _ = self.rejected.send(Rejected { line, reason });
    }

    /// Marks the server unreachable and schedules the next try; warns once per outage.
    fn down(&mut self, reason: String) {
        let now = Instant::now();
        self.summary.unreachable = true;
        let backoff = match &self.link {
            Link::Up => {
                eprintln!(
                    "warning: stage `{}`: cannot write to MongoDB at {} ({reason}); spooling records to {} and retrying",
                    self.s.stage,
                    self.s.shown_uri,
                    self.spool.path().display()
                );
                BACKOFF.0
            }
            Link::Down { backoff, .. } => (*backoff * 2).min(BACKOFF.1),
        };
        self.link = Link::Down {
            retry_at: now + backoff,
            backoff,
            failed_at: now,
        };
    }

    /// End of input: write or spool what is buffered, drain the spool for up to `drain_timeout`, and
    /// leave the rest spooled for the next start.
    async fn shutdown(&mut self) -> Result<Summary, SpoolError> {
        self.deadline = Some(Instant::now() + self.s.drain_timeout);
        self.flush().await?;
        if self.spool.pending() > 0 && self.may_try() {
            self.drain().await?;
        }
        self.spool.compact()?;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.client.clone().shutdown().immediate(true),
        )
        .await;
        self.summary.left = self.spool.pending();
        self.summary.unreachable = matches!(self.link, Link::Down { .. });
        Ok(std::mem::take(&mut self.summary))
    }

    /// A driver error as one line without secrets.
    fn describe(&self, e: &DriverError) -> String {
        let text = match &*e.kind {
            ErrorKind::ServerSelection { message, .. } => {
                let within = format!("no server answered within {:?}", self.selection_timeout);
                // The driver lists each server's last error; the first one is the useful part.
                match message
                    .split_once("Error: Kind: ")
                    .and_then(|(_, rest)| rest.split_once(", labels"))
                {
                    Some((cause, _)) => format!("{within}: {cause}"),
                    None => within,
                }
            }
            ErrorKind::Io(io) => format!("connection lost: {io}"),
            kind => kind.to_string(),
        };
        scrub(&text, &self.s.secrets).replace('\n', " ")
    }
}

/// Keeps records uncommitted at their source for good: a sink that failed before they were written or
/// spooled never releases their acks, so the source delivers them again on the next run.
fn hold_forever(acks: Vec<Ack>) {
    std::mem::forget(acks);
}

/// A failed writer's queue: closed, and its acks held for good.
fn hold_queued(rx: &mut tokio::sync::mpsc::Receiver<Chunk>) {
    rx.close();
    while let Ok(chunk) = rx.try_recv() {
        hold_forever(chunk.acks);
    }
}

fn spool_failed(e: SpoolError) -> StageError {
    StageError::with("cannot keep records safe in the spool", e)
}

/// A record as a document: its fields in column order, typed. A null field is left out (a record
/// without a field holds null only because others in its batch have it), except a key field, which is
/// always written so the document shows its whole key.
pub fn to_document(batch: &Batch, row: usize, key_fields: &[String]) -> Document {
    let mut d = Document::new();
    for c in &batch.columns {
        let v = c.value(row);
        if v == Value::Null && !key_fields.iter().any(|k| **k == *c.name) {
            continue;
        }
        d.insert(c.name.to_string(), to_bson(&v));
    }
    d
}

/// A value as BSON: timestamps as dates, integers as 64-bit, JSON values as sub-documents or arrays.
pub fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Int(i) => Bson::Int64(*i),
        Value::Float(f) => Bson::Double(*f),
        Value::Str(s) => Bson::String(s.to_string()),
        Value::Time(ms) => Bson::DateTime(DateTime::from_millis(*ms)),
        Value::Json(text) => match serde_json::from_str(text) {
            Ok(json) => json_to_bson(json),
            Err(_) => Bson::String(text.to_string()),
        },
    }
}

/// Plain JSON (not Extended JSON: a `$date` key in user data stays a key) as BSON.
fn json_to_bson(v: serde_json::Value) -> Bson {
    match v {
        serde_json::Value::Null => Bson::Null,
        serde_json::Value::Bool(b) => Bson::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Bson::String(s),
        serde_json::Value::Array(a) => Bson::Array(a.into_iter().map(json_to_bson).collect()),
        serde_json::Value::Object(o) => {
            Bson::Document(o.into_iter().map(|(k, v)| (k, json_to_bson(v))).collect())
        }
    }
}

/// A document's `_id`: its key fields as canonical Extended JSON text, in `key_fields` order, like
/// `{"window_start":{"$date":{"$numberLong":"1717243200000"}},"window_end":…,"genre":"Rock"}`. Text
/// rather than a sub-document: servers find a string `_id` by their primary key (FerretDB 1.x scans its
/// whole table for a sub-document `_id`), and the text keeps the key readable.
pub fn document_id(key: &Document) -> String {
    serde_json::to_string(&Bson::Document(key.clone()).into_canonical_extjson())
        .expect("JSON serialises")
}

/// The filter selecting a document's key; a field it lacks matches null, as stored.
fn key_filter(d: &Document, key_fields: &[String]) -> Document {
    key_fields
        .iter()
        .map(|f| (f.clone(), d.get(f).cloned().unwrap_or(Bson::Null)))
        .collect()
}

/// The connection string for messages: the password and secret-bearing options become `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "<not a connection string>".into();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => main.to_string(),
    };
    let mut out = format!("{scheme}://{main}");
    if let Some(q) = query {
        let opts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_option(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&opts.join("&"));
    }
    out
}

fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k == "authmechanismproperties"
}

/// The secrets of a connection string, as written and percent-decoded, longest first.
fn uri_secrets(uri: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, rest)) = uri.split_once("://") else {
        return vec![uri.to_string()];
    };
    let (main, query) = rest
        .split_once('?')
        .map_or((rest, None), |(m, q)| (m, Some(q)));
    if let Some((userinfo, _)) = main.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            out.push(password.to_string());
        }
    }
    for kv in query.into_iter().flat_map(|q| q.split('&')) {
        if let Some((k, v)) = kv.split_once('=') {
            if is_secret_option(k) {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
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
