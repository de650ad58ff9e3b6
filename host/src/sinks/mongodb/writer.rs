//! The writer thread: batches documents into `update` commands, spools them while the server cannot
//! take them, and drains the spool in order when it is back.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the server was reachable at the last attempt.
#[derive(Debug)]
pub(super) enum Link {
    Up,
    Down {
        retry_at: Instant,
        backoff: std::time::Duration,
        failed_at: Instant,
    },
}

/// A write that stopped because the server could not take it (not because of a document): the
/// documents from `done` on were not written.
pub(super) struct Unavailable {
    pub(super) done: usize,
    pub(super) reason: String,
}

/// The writer thread's state: client, spool, buffered documents and their acks.
pub(super) struct Writer {
    pub(super) s: Arc<Settings>,
    pub(super) client: Client,
    pub(super) spool: Spool,
    pub(super) pending: Vec<Chunk>,
    pub(super) pending_docs: usize,
    pub(super) oldest: Option<Instant>,
    pub(super) link: Link,
    /// The server was asked what it is and the unique index was made (or refused).
    pub(super) ready: bool,
    /// Documents are identified by `_id` = their key fields (a point write on any server); false for a
    /// collection that holds documents an older tributary wrote with ObjectId `_id`s.
    pub(super) by_id: bool,
    /// Statements per `update` command: `batch_size`, less on FerretDB 1.x.
    pub(super) statements: usize,
    /// At the end of a run: attempts stop here, and a server that just failed is not tried again.
    pub(super) deadline: Option<Instant>,
    pub(super) rejected: std::sync::mpsc::Sender<Rejected>,
    pub(super) summary: Summary,
    /// How long the driver waits for a server, for messages.
    pub(super) selection_timeout: std::time::Duration,
    /// Set by the stage thread when the run was stopped (Ctrl-C, SIGTERM): the end of the run then
    /// bounds its writing by `drain_timeout` even while the server answers.
    pub(super) stopping: Arc<AtomicBool>,
}

impl Writer {
    pub(super) async fn new(
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
            stopping: Arc::default(),
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

    pub(super) async fn run(
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
    pub(super) async fn work(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<(), StageError> {
        self.start().await.map_err(spool_failed)?;
        loop {
            let wake = self
                .next_wake()
                .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
            let msg = tokio::select! {
                // Messages first: a checkpoint's flush request must not wait behind spool draining.
                biased;
                msg = rx.recv() => msg,
                () = tokio::time::sleep_until(wake.into()) => {
                    self.flush().await.map_err(spool_failed)?;
                    // The spool is written a command at a time, only while no message waits: the
                    // stage hands documents over at once, and a stop or checkpoint is never held up.
                    if self.spool.pending() > 0 && self.may_try() {
                        self.drain_batch().await.map_err(spool_failed)?;
                    }
                    continue;
                }
            };
            let Some(chunk) = msg else { break };
            let now = chunk.flush;
            self.pending_docs += chunk.docs.len();
            self.pending.push(chunk);
            self.oldest.get_or_insert_with(Instant::now);
            if now {
                self.spool_pending().map_err(spool_failed)?;
            } else if self.pending_docs >= self.s.batch_size {
                self.flush().await.map_err(spool_failed)?;
            }
        }
        Ok(())
    }

    /// Connects and creates the index; what an earlier run left in the spool is written first, a batch
    /// at a time between new documents (which queue behind it).
    pub(super) async fn start(&mut self) -> Result<(), SpoolError> {
        if let Err(u) = self.ensure_ready().await {
            if !self.stopping.load(Ordering::SeqCst) {
                self.down(u.reason);
            }
        }
        if self.spool.pending() > 0 && matches!(self.link, Link::Up) {
            eprintln!(
                "tributary: stage `{}`: writing {} document(s) spooled by an earlier run in {}",
                self.s.stage,
                self.spool.pending(),
                self.spool.path().display()
            );
        }
        Ok(())
    }

    /// A checkpoint: the buffered documents go to the fsync'ed spool at once, however slow the server,
    /// so the checkpoint does not wait for them to be written; the spool is drained in order as usual.
    pub(super) fn spool_pending(&mut self) -> Result<(), SpoolError> {
        let (docs, acks) = self.take_pending();
        if !docs.is_empty() {
            self.summary.buffered += docs.len() as u64;
            if let Err(e) = self.spool.append(&docs) {
                hold_forever(acks);
                return Err(e);
            }
        }
        drop(acks);
        Ok(())
    }

    /// Empties the buffer: its documents in order, and the acks to release once they are written or
    /// spooled.
    fn take_pending(&mut self) -> (Vec<Document>, Vec<Ack>) {
        self.pending_docs = 0;
        self.oldest = None;
        let mut docs = Vec::new();
        let mut acks = Vec::new();
        for c in std::mem::take(&mut self.pending) {
            docs.extend(c.docs);
            Ack::merge_into(&mut acks, &c.acks);
        }
        (docs, acks)
    }

    /// When the loop must wake without a message: to flush the buffer, or to retry the spool.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let flush = self.oldest.map(|t| t + self.s.flush_interval);
        let retry = match (&self.link, self.spool.pending()) {
            (_, 0) => None,
            (Link::Down { retry_at, .. }, _) => Some(*retry_at),
            (Link::Up, _) => Some(Instant::now()),
        };
        flush.into_iter().chain(retry).min()
    }

    /// Whether a write may be attempted now.
    pub(super) fn may_try(&self) -> bool {
        match &self.link {
            Link::Up => true,
            Link::Down { failed_at, .. } if self.deadline.is_some() => {
                failed_at.elapsed() >= RECENT_FAILURE
            }
            Link::Down { retry_at, .. } => Instant::now() >= *retry_at,
        }
    }

    /// Writes (or spools) the buffered documents: one command's worth directly when nothing waits in
    /// the spool, otherwise behind what does. The buffered acks are dropped at the end: every document
    /// is then written, spooled or dead-lettered.
    pub(super) async fn flush(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (docs, acks) = self.take_pending();
        if docs.is_empty() {
            // Only a checkpoint's flush request: there is nothing to write.
            return Ok(());
        }
        let spooled =
            if self.spool.pending() == 0 && self.may_try() && docs.len() <= self.statements {
                match self.upsert(&docs).await {
                    Ok(()) => Ok(()),
                    Err(u) if self.stopping.load(Ordering::SeqCst) => {
                        self.spool.append(&docs[u.done..]).map(drop)
                    }
                    Err(u) => {
                        self.down(u.reason);
                        self.spool_docs(&docs[u.done..])
                    }
                }
            } else if matches!(self.link, Link::Up) {
                // More than one command's worth: through the spool, written a command at a time between
                // new messages, so the stage never waits long to hand over documents, and a checkpoint
                // behind them is not held up by a slow server.
                self.summary.buffered += docs.len() as u64;
                self.spool.append(&docs).map(drop)
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

    pub(super) fn spool_docs(&mut self, docs: &[Document]) -> Result<(), SpoolError> {
        let n = self.spool.append(docs)?;
        self.summary.spooled += n as u64;
        Ok(())
    }

    /// Writes spooled documents in order until the spool is empty, the server fails, or the deadline.
    pub(super) async fn drain(&mut self) -> Result<(), SpoolError> {
        // At the end of the input a server that answers gets everything, however slow; at a stop, or
        // once it fails, the deadline bounds the wait and the rest stays for the next start.
        while self.spool.pending() > 0 {
            let bounded = self.stopping.load(Ordering::SeqCst) || self.summary.unreachable;
            if (bounded && self.deadline.is_some_and(|d| Instant::now() >= d))
                || !self.drain_batch().await?
            {
                break;
            }
        }
        self.spool.clear_if_drained()
    }

    /// Writes the oldest batch of spooled documents; `false` when the server failed or nothing is left.
    pub(super) async fn drain_batch(&mut self) -> Result<bool, SpoolError> {
        let entries = self.spool.peek(self.statements)?;
        if entries.is_empty() {
            return Ok(false);
        }
        let docs: Vec<Document> = entries.iter().map(|(d, _)| d.clone()).collect();
        let result = self.upsert(&docs).await;
        let done = result.as_ref().map_or_else(|u| u.done, |()| docs.len());
        if done > 0 {
            self.spool.consumed(entries[done - 1].1, done);
            self.summary.from_spool += done as u64;
        }
        if let Err(u) = result {
            if !self.stopping.load(Ordering::SeqCst) {
                self.down(u.reason);
            }
            return Ok(false);
        }
        self.spool.clear_if_drained()?;
        Ok(true)
    }

    /// Runs a command within `timeout`.
    /// Awaits a request to the server for at most `timeout`. A stop abandons it: documents being
    /// written are still in the spool or before the last checkpoint, and upserting them again later
    /// changes nothing.
    pub(super) async fn bounded<F: std::future::IntoFuture>(
        &self,
        f: F,
    ) -> Result<F::Output, String> {
        let stopping = async {
            while !self.stopping.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(self.s.timeout, f.into_future()) => {
                r.map_err(|_| format!("no answer within {:?}", self.s.timeout))
            }
            () = stopping => Err("the run is stopping".into()),
        }
    }

    /// Runs a command (see [`Writer::bounded`]).
    pub(super) async fn command(&self, db: &str, command: Document) -> Result<Document, String> {
        let db = self.client.database(db);
        self.bounded(db.run_command(command))
            .await?
            .map_err(|e| self.describe(&e))
    }

    /// Once the server answers: learns whether it is FerretDB 1.x and creates the unique index on the
    /// key fields. A server that refuses the index (say, existing duplicates) is reported and writing
    /// goes on; a server that cannot be reached is retried.
    pub(super) async fn ensure_ready(&mut self) -> Result<(), Unavailable> {
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
        let created = self
            .bounded(coll.create_index(model))
            .await
            .map_err(|reason| Unavailable { done: 0, reason })?;
        // Documents an older tributary wrote carry ObjectId `_id`s: replacing them by a key `_id` is
        // impossible (`_id` is immutable), so such a collection keeps being upserted by its key fields.
        let legacy = match self
            .bounded(coll.find_one(doc! { "_id": { "$type": "objectId" } }))
            .await
            .map_err(|reason| Unavailable { done: 0, reason })?
        {
            Ok(found) => found.is_some(),
            Err(e) if matches!(*e.kind, ErrorKind::Command(_)) => true,
            Err(e) => {
                return Err(Unavailable {
                    done: 0,
                    reason: self.describe(&e),
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
    pub(super) async fn upsert(&mut self, docs: &[Document]) -> Result<(), Unavailable> {
        self.ensure_ready().await?;
        // A document updated again later in the same write (a window emitted, then updated by a late
        // record) is sent once, in its last version: the result is the same, and FerretDB 1.x can
        // refuse two upserts of one new `_id` in one command as a duplicate key.
        let mut seen = std::collections::HashSet::new();
        let mut superseded = vec![false; docs.len()];
        for (i, d) in docs.iter().enumerate().rev() {
            superseded[i] = !seen.insert(document_id(&key_filter(d, &self.s.key_fields)));
        }
        let mut i = 0;
        // After a refused statement, the statements of that command go again one a command, up to here.
        let mut singly_until = 0;
        // The statement last sent again after a duplicate-key refusal.
        let mut retried_at = None;
        while i < docs.len() {
            let start = i;
            let limit = if i < singly_until { 1 } else { self.statements };
            let mut updates = Vec::new();
            let mut first = None;
            let mut bytes = 0;
            while i < docs.len()
                && updates.len() < limit
                && (updates.is_empty() || bytes < MAX_COMMAND_BYTES)
            {
                if !superseded[i] {
                    bytes += docs[i].to_vec().map_or(0, |v| v.len());
                    updates.push(Bson::Document(self.statement(&docs[i])));
                    first.get_or_insert(i);
                }
                i += 1;
            }
            let n = updates.len();
            if n == 0 {
                self.summary.written += (i - start) as u64;
                continue;
            }
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
                // An upsert can lose a race to insert a new `_id` (another write of the same document
                // still running on the server, say one that timed out here and was sent again); the
                // document exists then, and the same upsert once more updates it, as MongoDB advises.
                Some(err)
                    if err.get_i32("code").ok() == Some(11000)
                        && self.by_id
                        && retried_at != Some(start) =>
                {
                    retried_at = Some(start);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    i = start;
                }
                Some(err) => {
                    let code = err.get("code").map(ToString::to_string).unwrap_or_default();
                    let msg = err.get_str("errmsg").unwrap_or("no message");
                    self.reject(
                        &docs[first.unwrap_or(start)],
                        format!("MongoDB refused the document (code {code}): {msg}"),
                    );
                }
                None => self.summary.written += (i - start) as u64,
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
    pub(super) fn statement(&self, d: &Document) -> Document {
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

    pub(super) fn reject(&self, d: &Document, reason: String) {
        let line = serde_json::to_string(&Bson::Document(d.clone()).into_canonical_extjson())
            .expect("JSON serialises");
        let _ = self.rejected.send(Rejected { line, reason });
    }

    /// Marks the server unreachable and schedules the next try; warns once per outage.
    pub(super) fn down(&mut self, reason: String) {
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
    pub(super) async fn shutdown(&mut self) -> Result<Summary, SpoolError> {
        self.deadline = Some(Instant::now() + self.s.drain_timeout);
        if self.stopping.load(Ordering::SeqCst) {
            // A stop: what is not written yet waits in the spool for the next start, so the stop
            // stays prompt (the last checkpoint counts on the spool, not on the server).
            self.spool_pending()?;
        } else {
            self.flush().await?;
            if self.spool.pending() > 0 && self.may_try() {
                self.drain().await?;
            }
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
    pub(super) fn describe(&self, e: &DriverError) -> String {
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
pub(super) fn hold_forever(acks: Vec<Ack>) {
    std::mem::forget(acks);
}

/// A failed writer's queue: closed, and its acks held for good.
pub(super) fn hold_queued(rx: &mut tokio::sync::mpsc::Receiver<Chunk>) {
    rx.close();
    while let Ok(chunk) = rx.try_recv() {
        hold_forever(chunk.acks);
    }
}

pub(super) fn spool_failed(e: SpoolError) -> StageError {
    StageError::with("cannot keep records safe in the spool", e)
}
