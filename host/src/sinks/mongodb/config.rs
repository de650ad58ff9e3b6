//! The `mongodb` stage's settings: its `pipeline.toml` table, checked into [`Settings`].

use super::*;

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
    /// How long a stopped run (Ctrl-C, SIGTERM), or one whose server failed, may spend writing spooled
    /// records before it leaves them for the next start. At the end of the input, a server that
    /// answers gets every record however long it takes. Default `5s`.
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

pub(super) fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 1000)
}
pub(super) fn default_flush_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(1000))
}
pub(super) fn default_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(30_000))
}
pub(super) fn default_spool() -> PathBuf {
    PathBuf::from("out/spool")
}
pub(super) fn default_drain_timeout() -> Duration {
    Duration(5000)
}

/// Checked settings, shared by the stage and its writer thread.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) stage: Arc<str>,
    /// The connection string as given, with its secrets: only for the driver.
    pub(super) uri: String,
    /// The connection string for messages.
    pub(super) shown_uri: String,
    /// Secrets to blank out of driver messages.
    pub(super) secrets: Vec<String>,
    pub(super) database: String,
    pub(super) collection: String,
    pub(super) key_fields: Vec<String>,
    pub(super) batch_size: usize,
    pub(super) flush_interval: std::time::Duration,
    pub(super) timeout: std::time::Duration,
    pub(super) write_concern: Option<Document>,
    pub(super) spool_path: PathBuf,
    pub(super) drain_timeout: std::time::Duration,
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
            stopping: Arc::default(),
            spool_depth: None,
        })))
    }
}

pub(super) fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn check_name(
    name: &Spanned<String>,
    field: &str,
    forbidden: &[char],
) -> Result<(), BuildError> {
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
pub(super) fn default_key_fields(ctx: &BuildContext<'_>) -> Result<Vec<String>, BuildError> {
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
    pub(super) fn document(&self) -> Result<Option<Document>, BuildError> {
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
