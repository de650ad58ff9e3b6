//! Builds the DAG from a validated pipeline and runs it: one thread per stage, bounded channels of
//! batches between them, end of input propagated by closing channels.

mod explain;
pub mod hotswap;
mod progress;
pub mod registry;

use crate::checkpoint::{Coordinator, Start};
use crate::config::{Diagnostic, Diagnostics, Pipeline};
use crate::deadletter::DeadLetters;
use crate::plugin::{ConfigValue, Plugin, PluginError, PluginHost};
use crate::record::Batch;
pub use explain::{describe as describe_field, explain, Fields};
pub use hotswap::Handover;
pub use progress::Progress;
use registry::Role;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// A stage's typed config, as parsed from its `[stages.NAME]` table.
pub trait StageConfig: fmt::Debug + Send + Sync {
    /// Checks the config against the world (files, plugins) and makes the runnable stage. Nothing is
    /// written here, so `tributary validate` can call it.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError>;

    /// The fields that identify one output record (a window's bounds and key), for sinks that upsert
    /// and were not told their key. `None`: this stage does not know.
    fn output_key(&self) -> Option<Vec<String>> {
        None
    }

    /// Whether this stage (a source) resumes where an earlier run stopped, so that output files append
    /// by default instead of starting afresh.
    fn resumes(&self) -> bool {
        false
    }

    /// Whether this stage (a source) can take part in checkpoints, which are on when every source can.
    fn checkpoints(&self) -> bool {
        self.resumes()
    }

    /// A `kafka` source in group mode: what the window stages downstream need to exchange records.
    fn group(&self) -> Option<crate::exchange::GroupSpec> {
        None
    }

    /// A window stage: its key field (`Some(None)` without one), by which its records are exchanged
    /// in group mode.
    fn exchange_key(&self) -> Option<Option<String>> {
        None
    }
}

/// A runnable stage.
pub enum Built {
    Source(Box<dyn Source>),
    Operator(Box<dyn Operator>),
    Sink(Box<dyn Sink>),
}

/// Produces batches until its input ends.
pub trait Source: Send {
    fn run(&mut self, out: &mut Output) -> Result<(), StageError>;
}

/// Turns batches into batches; `finish` runs once every input has ended (flush windows here).
pub trait Operator: Send {
    fn process(&mut self, batch: Arc<Batch>, out: &mut Output) -> Result<(), StageError>;
    fn finish(&mut self, out: &mut Output) -> Result<(), StageError>;

    /// The state to save in a checkpoint, taken when every batch before the checkpoint's barrier has
    /// been processed (see [`crate::checkpoint`]). `None`: the stage keeps no state between batches.
    fn checkpoint(&mut self, _out: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        Ok(None)
    }

    /// Loads what [`Operator::checkpoint`] saved, before the first batch of a run that resumes.
    /// Back to the state of a stage that has seen no record, to be restored again: a window serving
    /// another exchange partition in group mode (see [`crate::exchange`]).
    fn reset(&mut self) -> Result<(), StageError> {
        Err(StageError::msg("this stage cannot start over"))
    }

    fn restore(&mut self, _state: serde_json::Value) -> Result<(), StageError> {
        Ok(())
    }

    /// Hands what the stage holds to a new version of it (`tributary run --watch`), between two
    /// batches. Default: the state a checkpoint saves; an operator that saves none is finished first,
    /// as at the end of its input, so that rows it holds back go out instead of being lost.
    fn handover(&mut self, out: &mut Output) -> Result<Handover, StageError> {
        let state = self.checkpoint(out)?;
        if state.is_none() {
            self.finish(out)?;
        }
        Ok(Handover::new(state))
    }

    /// Takes over from the version before it, before its first batch: loads `handover.state`, or with
    /// `reset` (this instance is fresh, the state was refused) `handover.reset`. Default:
    /// [`Operator::restore`].
    fn take_over(&mut self, handover: &mut Handover, reset: bool) -> Result<(), StageError> {
        let state = if reset {
            handover.reset.take()
        } else {
            handover.state.take()
        };
        state.map_or(Ok(()), |s| self.restore(s))
    }

    /// The stage's event-time watermark (ms since the epoch), for the metrics; `None`: it has none.
    fn watermark(&self) -> Option<i64> {
        None
    }

    /// Its plugin and the fields it reads and writes, for `tributary validate --explain`.
    fn fields(&self) -> Fields {
        Fields::default()
    }
}

/// Writes batches somewhere; `open` runs before the first batch, `finish` after the last.
pub trait Sink: Send {
    fn open(&mut self) -> Result<(), StageError> {
        Ok(())
    }
    fn write(&mut self, batch: &Batch, ctx: &mut Output) -> Result<(), StageError>;
    fn finish(&mut self, ctx: &mut Output) -> Result<(), StageError>;

    /// Makes everything written so far durable (or spooled) for a checkpoint, and returns what a
    /// restart needs to find that point again (a file's length). `None`: nothing to restore.
    fn checkpoint(&mut self, _ctx: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        Ok(None)
    }

    /// Where the output stands before the first batch of a run with checkpoints that has none yet, in
    /// the form [`Sink::checkpoint`] returns: a run killed before its first checkpoint starts over
    /// from the same input and goes back to this point with [`Sink::restore`]. `None`: nothing to
    /// go back to (idempotent writes).
    fn initial(&mut self) -> Result<Option<serde_json::Value>, StageError> {
        Ok(None)
    }

    /// Goes back to the point [`Sink::checkpoint`] described, after `open` and before the first batch
    /// of a run that resumes from that checkpoint.
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), StageError> {
        Ok(())
    }

    /// The fields it reads, for `tributary validate --explain`; none listed: every field it gets.
    fn fields(&self) -> Fields {
        Fields::default()
    }
}

/// What a stage needs to build itself.
pub struct BuildContext<'a> {
    pub pipeline: &'a Pipeline,
    pub stage: &'a str,
    pub plugins: &'a PluginHost,
    /// Console sinks print their tables in the order of `pipeline.toml`, whichever finishes first.
    pub console_order: &'a Arc<crate::sinks::console::PrintOrder>,
}

impl BuildContext<'_> {
    /// A path from the config, relative to the pipeline file's directory.
    pub fn path(&self, p: &std::path::Path) -> PathBuf {
        self.pipeline.resolve(p)
    }

    /// Loads the plugin a stage names and hands it the stage's `config` table. An error points at
    /// `config` when the plugin rejected it, and at `plugin` otherwise.
    pub fn plugin<T>(
        &self,
        plugin: &toml::Spanned<String>,
        config: &crate::config::PluginConfig,
        instantiate: impl FnOnce(
            &PluginHost,
            &Plugin,
            &[(String, ConfigValue)],
        ) -> Result<T, PluginError>,
    ) -> Result<T, BuildError> {
        let at_plugin = |e: PluginError| BuildError::new(Some(plugin.span()), e.to_string());
        let loaded = self
            .plugins
            .load(plugin.get_ref(), &self.pipeline.base_dir)
            .map_err(at_plugin)?;
        let config_span = config.span().or(Some(plugin.span()));
        let entries = config
            .entries()
            .map_err(|e| BuildError::new(config_span.clone(), e))?;
        instantiate(self.plugins, &loaded, &entries).map_err(|e| match e {
            PluginError::Init { .. } => BuildError::new(config_span, e.to_string()),
            e => at_plugin(e),
        })
    }
}

/// A config that does not fit the world, pointing at the value at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl BuildError {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        BuildError {
            span,
            message: message.into(),
        }
    }
}

/// A stage failed while running.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StageError {
    pub fn msg(message: impl Into<String>) -> Self {
        StageError {
            message: message.into(),
            source: None,
        }
    }
    pub fn with(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StageError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Counters of one stage, shown in the run summary. The metrics endpoint and the progress line read
/// these same counters while the run goes on (see [`crate::observe`]), so they cannot disagree with
/// the summary; stages add to them once per batch, never per record.
#[derive(Debug)]
pub struct StageStats {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead: AtomicU64,
    pub late: AtomicU64,
    /// Records a window skipped after a restart because their windows were emitted before it.
    pub replayed: AtomicU64,
    /// One line a stage adds to the run summary (a sink saying what it wrote where).
    pub note: std::sync::Mutex<Option<String>>,
    /// A window stage's watermark (ms since the epoch) after its latest batch; `i64::MIN` while it has
    /// none (other stages, the global window, before the first record).
    pub watermark: AtomicI64,
    /// A source reading a file: the bytes read so far and the file's size (0: not a file).
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
    /// A Kafka source: per (topic, partition), how many records the broker has that are not read yet,
    /// as of the latest fetch.
    pub partition_lag: std::sync::Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    /// A sink with a spool (mongodb): documents waiting in it to be written; negative: no spool.
    pub spooled: AtomicI64,
    /// How long an operator stage (its plugin calls included) took per batch.
    pub batch_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for StageStats {
    fn default() -> Self {
        StageStats {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            late: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            note: std::sync::Mutex::new(None),
            watermark: AtomicI64::new(i64::MIN),
            bytes_read: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            partition_lag: std::sync::Mutex::default(),
            spooled: AtomicI64::new(-1),
            // 50 µs to about 13 s: a batch of a cheap transform up to one near its default timeout.
            batch_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(50e-6, 4.0, 10),
            ),
        }
    }
}

impl StageStats {
    pub fn set_note(&self, note: impl Into<String>) {
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = Some(note.into());
    }

    /// The window watermark, if the stage has one.
    pub fn watermark(&self) -> Option<i64> {
        Some(self.watermark.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }

    /// The Kafka lag per (topic, partition), as of the latest fetch.
    pub fn set_partition_lag(&self, topic: &str, partition: i32, lag: i64) {
        let mut m = self.partition_lag.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&(topic.to_string(), partition)) {
            Some(l) => *l = lag,
            None => drop(m.insert((topic.to_string(), partition), lag)),
        }
    }

    pub fn partition_lag(&self) -> Vec<((String, i32), i64)> {
        let m = self.partition_lag.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// One stage's counters with what identifies the stage, for whoever watches a run.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub type_name: String,
    pub role: Role,
    pub stats: Arc<StageStats>,
}

/// Fresh counters for every stage of `pipeline`, in its order: hand them to [`run`], and to the
/// metrics endpoint and the progress line, which read them while the run goes on.
pub fn watch(pipeline: &Pipeline) -> Vec<Watched> {
    pipeline
        .stages
        .iter()
        .map(|s| Watched {
            name: s.name.clone(),
            type_name: s.type_name.clone(),
            role: s.role,
            stats: Arc::default(),
        })
        .collect()
}

/// Asks a running pipeline to stop early (Ctrl-C, SIGTERM, a test). Unlike the end of input, a stop does
/// not emit open windows: their records are not committed either, so a restart computes them whole.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// The flag itself, for a signal handler to set.
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }
}

/// What travels between stages: batches, checkpoint barriers, and the end of a stage's output (so a
/// stage with several inputs knows which of them has ended while it waits for barriers).
enum Msg {
    Batch(Arc<Batch>),
    Barrier(u64),
    End,
}

/// A message and the input it came from (its index among the receiving stage's `inputs`).
struct Envelope {
    from: usize,
    msg: Msg,
}

/// A stage's connection to the rest of the pipeline: downstream channels, counters, dead letters.
pub struct Output {
    stage: Arc<str>,
    /// Each downstream stage's inbox, and which of its inputs this stage is.
    senders: Vec<(SyncSender<Envelope>, usize)>,
    pub stats: Arc<StageStats>,
    dead: DeadLetters,
    stop: StopFlag,
    progress: Arc<Progress>,
    checkpoints: Arc<Coordinator>,
}

impl Output {
    /// Whether the run was asked to stop; sources check it between records.
    pub fn stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Sleeps up to `d`, waking early if the run is asked to stop.
    pub fn sleep(&self, d: std::time::Duration) {
        let until = std::time::Instant::now() + d;
        while !self.stopping() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
        }
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The run's stop flag, for progress tokens that must not count work a stop abandons.
    pub fn stop_flag(&self) -> StopFlag {
        self.stop.clone()
    }

    /// The run's progress board: window watermarks, committed and restored by sources.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Counts records a window skipped because they were emitted before a restart (not dead-lettered:
    /// they are in results already written).
    pub fn replayed(&self, n: u64) {
        self.stats.replayed.fetch_add(n, Ordering::Relaxed);
    }

    /// Ends this stage's output while the stage keeps running: downstream sees the end of input (a
    /// source that waits for its results to be written before it commits). Later `emit`s return `false`.
    pub fn close(&mut self) {
        for (tx, from) in self.senders.drain(..) {
            let _ = tx.send(Envelope {
                from,
                msg: Msg::End,
            });
        }
    }

    fn send(&mut self, msg: impl Fn() -> Msg) -> bool {
        self.senders.retain(|(tx, from)| {
            tx.send(Envelope {
                from: *from,
                msg: msg(),
            })
            .is_ok()
        });
        !self.senders.is_empty()
    }

    /// Sends a batch to every downstream stage. `false` means none is listening any more.
    pub fn emit(&mut self, batch: Batch) -> bool {
        if batch.len == 0 {
            return !self.senders.is_empty();
        }
        self.stats
            .records_out
            .fetch_add(batch.len as u64, Ordering::Relaxed);
        let batch = Arc::new(batch);
        self.send(|| Msg::Batch(batch.clone()))
    }

    /// The run's checkpoint coordinator.
    pub fn checkpoints(&self) -> &Arc<Coordinator> {
        &self.checkpoints
    }

    /// The checkpoint a source is to start now, if one is due (see [`crate::checkpoint`]).
    pub fn checkpoint_due(&self) -> Option<u64> {
        self.checkpoints.due(&self.stage)
    }

    /// A source hands on barrier `id` after every batch it emitted so far; `position` is where it will
    /// go on reading. Its dead letters so far reach the disk first.
    pub fn barrier(&mut self, id: u64, position: serde_json::Value) {
        if let Err(e) = self.sync_dead_letters() {
            self.checkpoints.fail(&format!(
                "stage `{}` cannot write the dead-letter file ({e})",
                self.stage
            ));
            return;
        }
        self.send(|| Msg::Barrier(id));
        self.checkpoints.injected(&self.stage, id, position);
    }

    /// Dead-letters a decoded record.
    pub fn dead_row(&self, batch: &Batch, row: usize, reason: &str) {
        self.stats.dead.fetch_add(1, Ordering::Relaxed);
        self.dead.record(&self.stage, reason, batch, row);
    }

    /// Dead-letters a record that is late for its windows.
    pub fn late_row(&self, batch: &Batch, row: usize, reason: &str) {
        self.stats.late.fetch_add(1, Ordering::Relaxed);
        self.dead.record(&self.stage, reason, batch, row);
    }

    /// Makes the dead letters written so far durable (see [`DeadLetters::sync`]).
    pub fn sync_dead_letters(&self) -> std::io::Result<()> {
        self.dead.sync()
    }

    /// Dead-letters an input line that could not be decoded.
    pub fn dead_line(&self, line: &str, location: serde_json::Value, reason: &str) {
        self.stats.dead.fetch_add(1, Ordering::Relaxed);
        self.dead.line(&self.stage, reason, line, location);
    }

    /// Records in the dead-letter output a result the stage could not produce (its plugin failed at
    /// the end of input): there is no record to write, only where and why.
    pub fn dead_result(&self, location: serde_json::Value, reason: &str) {
        self.stats.dead.fetch_add(1, Ordering::Relaxed);
        self.dead.lost(&self.stage, reason, location);
    }
}

/// A built stage with its wiring.
struct Node {
    name: String,
    type_name: String,
    stage: Built,
    inbox: Option<Receiver<Envelope>>,
    /// How many stages feed this one.
    inputs: usize,
    output: Output,
    /// Where `tributary run --watch` leaves a new operator for this stage.
    swap: Arc<hotswap::Slot>,
}

/// One line of the run summary.
#[derive(Debug)]
pub struct StageReport {
    pub name: String,
    pub type_name: String,
    pub records_in: u64,
    pub records_out: u64,
    pub dead: u64,
    pub late: u64,
    pub replayed: u64,
    pub note: Option<String>,
    /// The most frequent kinds of dead-letter reason, with their counts.
    pub reasons: Vec<(String, u64)>,
}

impl StageReport {
    /// Whether the stage set aside every record it received (dead-lettered or late): almost always a
    /// misconfiguration (a wrong field name, a plugin that fails on everything).
    pub fn lost_everything(&self) -> bool {
        self.records_in > 0 && self.dead + self.late >= self.records_in
    }
}

/// What a run did, stage by stage.
#[derive(Debug)]
pub struct RunReport {
    pub stages: Vec<StageReport>,
    pub dead_letter_path: PathBuf,
    /// Stopped before the end of input: open windows were not emitted.
    pub stopped: bool,
    /// The newest checkpoint this run wrote, if it took any.
    pub checkpoint: Option<u64>,
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .stages
            .iter()
            .map(|s| s.name.len() + s.type_name.len() + 3)
            .max()
            .unwrap_or(0);
        for s in &self.stages {
            let label = format!("{} ({})", s.name, s.type_name);
            writeln!(
                f,
                "  {label:<w$}  in {:>8}  out {:>8}  dead-lettered {:>6}  late {:>6}",
                s.records_in, s.records_out, s.dead, s.late
            )?;
        }
        for s in &self.stages {
            if let Some(note) = &s.note {
                writeln!(f, "  {}: {note}", s.name)?;
            }
        }
        let dead: u64 = self.stages.iter().map(|s| s.dead + s.late).sum();
        if dead > 0 {
            write!(
                f,
                "  {dead} record(s) dead-lettered to {}",
                self.dead_letter_path.display()
            )?;
        } else {
            write!(f, "  no record dead-lettered")?;
        }
        let replayed: u64 = self.stages.iter().map(|s| s.replayed).sum();
        if replayed > 0 {
            write!(
                f,
                "\n  {replayed} record(s) read again after the restart skipped: their windows were emitted before it"
            )?;
        }
        match (self.stopped, self.checkpoint) {
            (true, Some(id)) => write!(
                f,
                "\n  stopped before the end of input: open windows are saved in checkpoint {id}, and a restart resumes from it"
            )?,
            (true, None) => write!(
                f,
                "\n  stopped before the end of input: open windows were not emitted"
            )?,
            (false, _) => {}
        }
        Ok(())
    }
}

/// A stage that failed while running.
#[derive(Debug)]
pub struct RunError {
    pub stage: String,
    pub error: StageError,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}` failed: {}", self.stage, self.error)
    }
}

/// The stage error's message is part of this one's, so the chain goes on with its cause: each line of
/// the report says something new.
impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Builds every stage, reporting every problem at once with file, line and column.
pub fn build(
    pipeline: &Pipeline,
    plugins: &PluginHost,
) -> Result<Vec<(usize, Built)>, Diagnostics> {
    let mut built = Vec::new();
    let mut problems: Vec<Diagnostic> = Vec::new();
    let console_order = Arc::new(crate::sinks::console::PrintOrder::for_pipeline(pipeline));
    for (i, stage) in pipeline.stages.iter().enumerate() {
        let ctx = BuildContext {
            pipeline,
            stage: &stage.name,
            plugins,
            console_order: &console_order,
        };
        match stage.config.build(&ctx) {
            Ok(b) => built.push((i, b)),
            Err(e) => problems.push(pipeline.diagnostic(
                e.span.or(Some(stage.name_span.clone())),
                format!("stage `{}`: {}", stage.name, e.message),
            )),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(Diagnostics(problems))
    }
}

/// Runs a built pipeline to the end of its input, counting into `watched` (from [`watch`]).
pub fn run(
    pipeline: &Pipeline,
    built: Vec<(usize, Built)>,
    dead: DeadLetters,
    stop: StopFlag,
    checkpoints: Arc<Coordinator>,
    watched: &[Watched],
    swaps: &[Arc<hotswap::Slot>],
) -> Result<RunReport, Vec<RunError>> {
    let stages = &pipeline.stages;
    // Bounded channels give backpressure: a slow sink slows the source instead of filling memory.
    type Inbox = (SyncSender<Envelope>, Receiver<Envelope>);
    let mut inboxes: Vec<Option<Inbox>> = stages
        .iter()
        .map(|s| {
            if s.role == Role::Source {
                None
            } else {
                Some(sync_channel(8))
            }
        })
        .collect();
    let progress = Progress::new(stop.clone());
    let mut nodes: Vec<Node> = Vec::new();
    for (i, stage) in built {
        let senders = stages
            .iter()
            .enumerate()
            .filter_map(|(j, down)| {
                let from = down
                    .inputs
                    .iter()
                    .position(|inp| inp.get_ref() == &stages[i].name)?;
                inboxes[j].as_ref().map(|(tx, _)| (tx.clone(), from))
            })
            .collect();
        nodes.push(Node {
            name: stages[i].name.clone(),
            type_name: stages[i].type_name.clone(),
            stage,
            inbox: None,
            inputs: stages[i].inputs.len(),
            swap: swaps[i].clone(),
            output: Output {
                stage: stages[i].name.as_str().into(),
                senders,
                stats: watched[i].stats.clone(),
                dead: dead.clone(),
                stop: stop.clone(),
                progress: progress.clone(),
                checkpoints: checkpoints.clone(),
            },
        });
    }
    // Each stage's receiver goes to its node; dropping our senders lets end of input propagate.
    for (node, slot) in nodes.iter_mut().zip(inboxes.iter_mut()) {
        node.inbox = slot.take().map(|(_, rx)| rx);
    }
    drop(inboxes);

    let stats: Vec<(String, String, Arc<StageStats>)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.type_name.clone(), n.output.stats.clone()))
        .collect();
    let handles: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            let name = node.name.clone();
            let handle = std::thread::Builder::new()
                .name(format!("stage-{name}"))
                .spawn(move || run_node(node))
                .expect("spawn stage thread");
            (name, handle)
        })
        .collect();
    let mut errors = Vec::new();
    for (stage, handle) in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => errors.push(RunError { stage, error }),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                errors.push(RunError {
                    stage,
                    error: StageError::msg(format!("internal error (panic): {msg}")),
                });
            }
        }
    }
    if let Err(e) = dead.flush() {
        errors.push(RunError {
            stage: "dead_letter".into(),
            error: StageError::with("cannot write the dead-letter file", e),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(RunReport {
        stages: stats
            .into_iter()
            .map(|(name, type_name, s)| StageReport {
                reasons: dead.top_reasons(&name, 3),
                name,
                type_name,
                records_in: load(&s.records_in),
                records_out: load(&s.records_out),
                dead: load(&s.dead),
                late: load(&s.late),
                replayed: load(&s.replayed),
                note: s.note.lock().unwrap_or_else(|p| p.into_inner()).take(),
            })
            .collect(),
        dead_letter_path: dead.path().to_path_buf(),
        stopped: stop.is_stopped(),
        checkpoint: checkpoints.last_completed(),
    })
}

/// Lines up a stage's inputs at checkpoint barriers: after barrier `n` from one input, that input's
/// messages wait until barrier `n` has come from every input that has not ended, so the stage's saved
/// state holds exactly the records before the barrier.
struct Align {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    barrier: Option<u64>,
    held: std::collections::VecDeque<Envelope>,
}

impl Align {
    fn new(inputs: usize) -> Self {
        Align {
            blocked: vec![false; inputs.max(1)],
            ended: vec![false; inputs.max(1)],
            barrier: None,
            held: Default::default(),
        }
    }

    fn push(&mut self, env: Envelope, steps: &mut Vec<Event>) {
        let from = env.from.min(self.blocked.len() - 1);
        if self.blocked[from] {
            self.held.push_back(env);
            return;
        }
        match env.msg {
            Msg::Batch(b) => steps.push(Event::Batch(b)),
            Msg::End => self.ended[from] = true,
            Msg::Barrier(id) => {
                self.blocked[from] = true;
                self.barrier = Some(id);
            }
        }
        let aligned = (0..self.blocked.len()).all(|i| self.blocked[i] || self.ended[i]);
        if let (Some(id), true) = (self.barrier, aligned) {
            self.barrier = None;
            self.blocked.fill(false);
            steps.push(Event::Barrier(id));
            for env in std::mem::take(&mut self.held) {
                self.push(env, steps);
            }
        }
    }
}

/// What a stage that reads an inbox handles, in order.
enum Event {
    /// The state saved in the checkpoint the run resumes from, before anything else.
    Restore(serde_json::Value),
    Batch(Arc<Batch>),
    /// Checkpoint barrier `id` has come from every input.
    Barrier(u64),
    /// Checkpoints are on and none was taken yet: before its first batch, the stage records where its
    /// output stands, or goes back there if an earlier attempt recorded it.
    Fresh,
}

/// Feeds a stage its inbox: its restored state at the first message (by then the sources have said
/// whether they resume), then batches and lined-up barriers in order.
fn drive(
    name: &str,
    inbox: Receiver<Envelope>,
    inputs: usize,
    checkpoints: &Coordinator,
    mut handle: impl FnMut(Event) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let mut align = Align::new(inputs);
    let mut steps = Vec::new();
    let mut first = true;
    for env in inbox {
        if std::mem::take(&mut first) {
            match checkpoints.start(name) {
                Start::Restore(state) => handle(Event::Restore(state))?,
                Start::Fresh => handle(Event::Fresh)?,
                Start::Plain => {}
            }
        }
        align.push(env, &mut steps);
        for event in steps.drain(..) {
            handle(event)?;
        }
    }
    Ok(())
}

/// Runs one stage. A stage that fails stops the whole run, before it lets go of the batch it failed on:
/// records it did not handle must not count as done at their source (see `record::Ack`).
fn run_node(node: Node) -> Result<(), StageError> {
    let Node {
        name,
        stage,
        inbox,
        inputs,
        mut output,
        swap,
        ..
    } = node;
    let stop = output.stop.clone();
    let checkpoints = output.checkpoints.clone();
    let failed = |e: StageError| {
        checkpoints.fail(&format!("stage `{name}` failed"));
        stop.stop();
        e
    };
    // Dead letters of the records before a barrier are durable before the stage's part is saved.
    let save = |output: &mut Output, id: u64, part: Option<serde_json::Value>| {
        output
            .sync_dead_letters()
            .map_err(|e| StageError::with("cannot write the dead-letter file", e))?;
        output.checkpoints.saved(&name, id, part);
        Ok(())
    };
    match stage {
        Built::Source(mut s) => {
            let r = s.run(&mut output).map_err(failed);
            output.close();
            r
        }
        Built::Operator(mut op) => {
            let inbox = inbox.expect("operators have an inbox");
            // A new plugin takes over between two events, so barriers stay lined up.
            let take_swap = |op: Box<dyn Operator>, output: &mut Output| match swap.take() {
                Some(s) => hotswap::swap(op, s, output),
                None => Ok(op),
            };
            drive(&name, inbox, inputs, &checkpoints, |event| match event {
                Event::Restore(state) => op.restore(state),
                // Operators start empty either way.
                Event::Fresh => Ok(()),
                Event::Batch(batch) => {
                    take(&mut op, |op| take_swap(op, &mut output))?;
                    output
                        .stats
                        .records_in
                        .fetch_add(batch.len as u64, Ordering::Relaxed);
                    // The batch itself goes to the stage, so a sole reader may take its columns
                    // without a copy; its acks stay held here until a failure has stopped the run
                    // (see above).
                    let acks = batch.acks.clone();
                    let started = std::time::Instant::now();
                    op.process(batch, &mut output)?;
                    output
                        .stats
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    if let Some(wm) = op.watermark() {
                        output.stats.watermark.store(wm, Ordering::Relaxed);
                    }
                    drop(acks);
                    Ok(())
                }
                Event::Barrier(id) => {
                    take(&mut op, |op| take_swap(op, &mut output))?;
                    let part = op.checkpoint(&mut output)?;
                    save(&mut output, id, part)?;
                    output.send(|| Msg::Barrier(id));
                    Ok(())
                }
            })
            .map_err(failed)?;
            if output.stopping() {
                output.close();
                return Ok(());
            }
            take(&mut op, |op| take_swap(op, &mut output)).map_err(failed)?;
            op.finish(&mut output).map_err(failed)?;
            output.close();
            checkpoints.stage_ended(&name);
            Ok(())
        }
        Built::Sink(mut sink) => {
            sink.open().map_err(failed)?;
            let inbox = inbox.expect("sinks have an inbox");
            drive(&name, inbox, inputs, &checkpoints, |event| match event {
                Event::Restore(state) => sink.restore(state),
                Event::Fresh => match sink.initial()? {
                    Some(part) => match checkpoints.initial(&name, part) {
                        Ok(Some(earlier)) => sink.restore(earlier),
                        Ok(None) => Ok(()),
                        Err(e) => Err(StageError::with(
                            "cannot record where the output starts in the checkpoint directory",
                            e,
                        )),
                    },
                    None => Ok(()),
                },
                Event::Batch(batch) => {
                    output
                        .stats
                        .records_in
                        .fetch_add(batch.len as u64, Ordering::Relaxed);
                    sink.write(&batch, &mut output)
                }
                Event::Barrier(id) => {
                    let part = sink.checkpoint(&mut output)?;
                    save(&mut output, id, part)
                }
            })
            .map_err(failed)?;
            sink.finish(&mut output).map_err(failed)?;
            if !output.stopping() {
                checkpoints.stage_ended(&name);
            }
            Ok(())
        }
    }
}

/// Replaces an operator by what `f` makes of it.
fn take(
    op: &mut Box<dyn Operator>,
    f: impl FnOnce(Box<dyn Operator>) -> Result<Box<dyn Operator>, StageError>,
) -> Result<(), StageError> {
    let old = std::mem::replace(op, Box::new(Taken));
    *op = f(old)?;
    Ok(())
}

/// Stands in for an operator while it is being swapped.
struct Taken;

impl Operator for Taken {
    fn process(&mut self, _: Arc<Batch>, _: &mut Output) -> Result<(), StageError> {
        Err(StageError::msg(
            "internal error: the stage lost its operator in a swap",
        ))
    }
    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        Err(StageError::msg(
            "internal error: the stage lost its operator in a swap",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(from: usize, msg: Msg) -> Envelope {
        Envelope { from, msg }
    }

    fn batch(len: usize) -> Msg {
        Msg::Batch(Arc::new(Batch {
            len,
            ..Batch::default()
        }))
    }

    /// What the stage sees: batch lengths, and barriers as `B<id>`.
    fn seen(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Batch(b) => b.len.to_string(),
                Event::Barrier(id) => format!("B{id}"),
                Event::Restore(_) => "R".into(),
                Event::Fresh => "F".into(),
            })
            .collect()
    }

    #[test]
    fn an_input_past_its_barrier_waits_for_the_others() {
        let mut align = Align::new(2);
        let mut out = Vec::new();
        align.push(env(0, batch(1)), &mut out);
        align.push(env(0, Msg::Barrier(7)), &mut out);
        // After its barrier, input 0's batch waits; input 1's batches before its barrier go on.
        align.push(env(0, batch(2)), &mut out);
        align.push(env(1, batch(3)), &mut out);
        assert_eq!(seen(&out), ["1", "3"]);
        align.push(env(1, Msg::Barrier(7)), &mut out);
        assert_eq!(seen(&out), ["1", "3", "B7", "2"]);
    }

    #[test]
    fn an_ended_input_does_not_hold_a_barrier_back() {
        let mut align = Align::new(2);
        let mut out = Vec::new();
        align.push(env(0, Msg::Barrier(1)), &mut out);
        align.push(env(0, batch(5)), &mut out);
        assert!(out.is_empty());
        align.push(env(1, Msg::End), &mut out);
        assert_eq!(seen(&out), ["B1", "5"]);
        // From now on input 0 alone lines up barriers.
        align.push(env(0, Msg::Barrier(2)), &mut out);
        assert_eq!(seen(&out), ["B1", "5", "B2"]);
    }
}
