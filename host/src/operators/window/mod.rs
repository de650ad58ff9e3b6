//! `type = "window"`: groups records by key and event-time window and aggregates each group with a
//! window-aggregate plugin. The host owns windows, keys, watermarks and where state lives; the plugin
//! only folds rows into accumulator slots and reads results out. At `finish` the plugin sees each
//! slot's window bounds and key and, since ABI 0.2, returns any number of rows per slot (`top_k` returns
//! up to k), values possibly null; every row carries its slot's `window_start`, `window_end` and key.
//!
//! Event time is the record timestamp or a named field. The watermark is the largest event time seen
//! minus `max_delay`. A window is emitted once the watermark reaches its end and kept for
//! `allowed_lateness` more, during which a record for it updates it and it is emitted again. A record
//! behind the watermark by more than `allowed_lateness` is late: it goes to the dead-letter output with
//! reason `late` (except for the global window, open until the end of input). The end of input closes
//! every window.
//!
//! Event-time sanity: a record whose event time is more than `max_future` ahead of the newest event
//! time so far, or of the clock if that is later, would move the watermark past every record after it;
//! it is dead-lettered with reason `time out of range` instead, as is an event time outside ±8.64e15 ms
//! (the years −271821 to 275760), where window bounds would overflow. Keys group by type and value: the
//! string `"1"`, the integer `1` and the float `1.0` are three keys; a key that is a JSON array or object
//! is dead-lettered.
//!
//! Restarts: a window stage's watermark is committed with the Kafka offsets (see
//! [`Progress`](crate::topology::Progress)) and restored at a restart with `start = "committed"`. Offsets
//! commit only up to the first batch some open window still holds, so a restart reads again records of
//! windows that were emitted before the stop; a window that ends at or before the restored watermark was
//! emitted (or had no record then), so such records are skipped and counted as `replayed` instead of
//! forming a second, partial result. Known limits, until window state is checkpointed:
//! - with `allowed_lateness`, a late record that was read but not yet folded into its (emitted, still
//!   open for updates) window when the run stopped is skipped too, so that update is lost; and a record
//!   folded into such a window after its emission is skipped rightly, but the window is not emitted
//!   again with it after the restart;
//! - a session is recognised as emitted only once it is complete again (its end at or before the
//!   restored watermark); a re-read record can still bridge it to a new session that then is emitted
//!   with part of the old one.

mod global;
mod handover;
mod hopping;
mod keys;
mod recovery;
mod schedule;
mod session;
mod state;
mod tumbling;

use crate::config::{ByteSize, Duration, OnError, PluginConfig};
use crate::plugin::{
    key_shape, to_wit, wit, AggregateInstance, Bounds, FieldSpec, Finished, KeyColumn, KeyDict,
    KeyShape, KeyType, KeyValues, Keys as PluginKeys, Limits, Panes as PluginPanes, PluginError,
};
use crate::record::{column, Ack, Batch, Column, Key, Value};
use crate::topology::{BuildContext, BuildError, Built, Operator, Output, StageConfig, StageError};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::Array;
use keys::{KeyId, KeyTable};
use recovery::Recovery;
use schedule::Schedule;
use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

/// Aggregates records per key and window with a window-aggregate plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// A bundled aggregate (`average`, `sum`, `max`, `top_k`) or the path to a `.wasm` file, built for
    /// plugin ABI 0.4 (the SDK's), 0.3, 0.2 or 0.1.
    pub plugin: Spanned<String>,
    /// The plugin's own settings, e.g. `config = { field = "streams" }`.
    #[serde(default)]
    pub config: PluginConfig,
    /// The field to group by; results carry it under the same name. Omit it to aggregate all records
    /// of a window together.
    pub key: Option<String>,
    /// The window: `{ kind = "tumbling", size = "1m" }`, `{ kind = "hopping", size = "1m", slide = "10s" }`,
    /// `{ kind = "session", gap = "30s" }` or `{ kind = "global" }` (one window, emitted at end of input).
    pub window: Spanned<WindowTable>,
    /// A field holding the event time in milliseconds since the epoch; default: the record timestamp.
    pub event_time: Option<String>,
    /// How far behind the newest event time the watermark trails, to wait for out-of-order records.
    /// Default `0s`.
    #[serde(default)]
    pub max_delay: Duration,
    /// How long after the watermark passes a window's end the window still accepts records (and is
    /// emitted again with them). Records behind the watermark by more than this are dead-lettered as
    /// `late`. Default `0s`.
    #[serde(default)]
    pub allowed_lateness: Duration,
    /// How far ahead of the newest event time so far (or of the clock, whichever is later) a record may
    /// be. A record further ahead is dead-lettered with reason `time out of range` rather than moving
    /// the watermark past every record after it. Default `1h`. Not checked for the global window.
    pub max_future: Option<Duration>,
    /// Longest one plugin call (one batch, `init`, or emitting results) may run before the run stops
    /// with an error that names the plugin, like `"5s"` (the default).
    pub timeout: Option<Duration>,
    /// Most memory the plugin's instance (all its open windows' accumulators) may use, like `"512MiB"`
    /// (the default).
    pub memory_limit: Option<ByteSize>,
    /// When the plugin fails (traps, panics, passes its `timeout` or `memory_limit`, or breaks the
    /// contract): `"dead-letter"` (the default) sends the records of the batch it failed on to the
    /// dead-letter output with the cause, restarts the plugin with its open windows rebuilt, and goes
    /// on; at the end of input, a window whose result fails is named in the dead-letter output instead.
    /// `"fail"` stops the run with the error.
    pub on_error: Option<OnError>,
}

/// `max_future` when the stage does not set it: an hour.
const DEFAULT_MAX_FUTURE_MS: i64 = 3_600_000;
/// Event times beyond this many milliseconds from the epoch (either way) are out of range: ECMAScript's
/// date range, far from where window bounds (time + size + lateness) overflow.
pub const TIME_LIMIT_MS: i64 = 8_640_000_000_000_000;

/// The `window` table of a window stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTable {
    /// `tumbling`, `hopping`, `session` or `global`.
    pub kind: Spanned<String>,
    /// Window length (tumbling, hopping), like `1m`.
    pub size: Option<Duration>,
    /// Distance between window starts (hopping), like `10s`.
    pub slide: Option<Duration>,
    /// Inactivity that closes a session (session), like `30s`.
    pub gap: Option<Duration>,
}

/// A window shape, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, slide: i64 },
    Session { gap: i64 },
    Global,
}

impl WindowTable {
    fn kind(&self, span: std::ops::Range<usize>) -> Result<WindowKind, BuildError> {
        let err = |m: String| BuildError::new(Some(span.clone()), m);
        let positive = |name: &str, d: Option<Duration>, example: &str| match d {
            Some(d) if d.millis() > 0 => Ok(d.millis()),
            Some(_) => Err(err(format!("window `{name}` must be longer than 0"))),
            None => Err(err(format!(
                "a {} window needs `{name}`; add it, like `{name} = \"{example}\"`",
                self.kind.get_ref()
            ))),
        };
        let unused = |name: &str, d: Option<Duration>| match d {
            Some(_) => Err(err(format!(
                "a {} window takes no `{name}`; remove it",
                self.kind.get_ref()
            ))),
            None => Ok(()),
        };
        match self.kind.get_ref().as_str() {
            "tumbling" => {
                unused("slide", self.slide)?;
                unused("gap", self.gap)?;
                Ok(WindowKind::Tumbling { size: positive("size", self.size, "1m")? })
            }
            "hopping" => {
                unused("gap", self.gap)?;
                let size = positive("size", self.size, "1m")?;
                let slide = positive("slide", self.slide, "10s")?;
                if slide > size {
                    return Err(err("a hopping window's `slide` must not exceed its `size`".into()));
                }
                Ok(WindowKind::Hopping { size, slide })
            }
            "session" => {
                unused("size", self.size)?;
                unused("slide", self.slide)?;
                Ok(WindowKind::Session { gap: positive("gap", self.gap, "30s")? })
            }
            "global" => {
                unused("size", self.size)?;
                unused("slide", self.slide)?;
                unused("gap", self.gap)?;
                Ok(WindowKind::Global)
            }
            other => Err(BuildError::new(
                Some(self.kind.span()),
                format!("unknown window kind `{other}`; use `tumbling`, `hopping`, `session` or `global`"),
            )),
        }
    }
}

impl StageConfig for WindowConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let kind = self.window.get_ref().kind(self.window.span())?;
        let limits = Limits::from_config(self.timeout, self.memory_limit)
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        let mut instance = ctx.plugin(&self.plugin, &self.config, |host, plugin, config| {
            host.aggregate(plugin, config, limits)
        })?;
        instance.set_log_label(format!("stage `{}`", ctx.stage));
        let mut reserved = vec!["window_start", "window_end"];
        reserved.extend(self.key.as_deref());
        crate::plugin::check_outputs(&instance.spec.outputs, &reserved)
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        let settings = Settings {
            kind,
            key: self.key.as_deref().map(Arc::from),
            event_time: self.event_time.as_deref().map(Arc::from),
            max_delay: self.max_delay.millis(),
            allowed_lateness: self.allowed_lateness.millis(),
            max_future: self
                .max_future
                .map_or(DEFAULT_MAX_FUTURE_MS, |d| d.millis()),
        };
        let on_error = self.on_error.unwrap_or_default();
        Ok(Built::Operator(Box::new(WindowOperator {
            windows: Windows::new(settings, instance),
            started: false,
            recovery: (on_error == OnError::DeadLetter).then(Recovery::default),
            failures: 0,
        })))
    }

    /// A result is identified by its window's bounds and its key.
    fn exchange_key(&self) -> Option<Option<String>> {
        Some(self.key.clone())
    }

    fn output_key(&self) -> Option<Vec<String>> {
        let bounds = ["window_start".to_string(), "window_end".to_string()];
        Some(bounds.into_iter().chain(self.key.clone()).collect())
    }
}

/// The accumulator calls the window logic needs; the plugin instance provides them, tests fake them.
pub trait Accumulators: Send {
    fn inputs(&self) -> &[FieldSpec];
    fn outputs(&self) -> &[FieldSpec];
    fn add(&mut self, slots: &[u32], input: &wit::Batch)
        -> Result<Vec<wit::RowError>, PluginError>;
    fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError>;
    /// Results of the panes: any number of rows per pane (`Finished::rows` says whose), values may be
    /// null.
    fn finish(&mut self, panes: &PluginPanes) -> Result<Finished, PluginError>;
    fn free(&mut self, slots: &[u32]) -> Result<(), PluginError>;
    fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError>;
    fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError>;
    /// Starts over with no accumulators, after a failed call.
    fn restart(&mut self) -> Result<(), PluginError>;
}

impl Accumulators for AggregateInstance {
    fn inputs(&self) -> &[FieldSpec] {
        &self.spec.inputs
    }
    fn outputs(&self) -> &[FieldSpec] {
        &self.spec.outputs
    }
    fn add(
        &mut self,
        slots: &[u32],
        input: &wit::Batch,
    ) -> Result<Vec<wit::RowError>, PluginError> {
        AggregateInstance::add(self, slots, input)
    }
    fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError> {
        AggregateInstance::merge(self, dst, src)
    }
    fn finish(&mut self, panes: &PluginPanes) -> Result<Finished, PluginError> {
        AggregateInstance::finish(self, panes)
    }
    fn free(&mut self, slots: &[u32]) -> Result<(), PluginError> {
        AggregateInstance::free(self, slots)
    }
    fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError> {
        AggregateInstance::save(self, slot)
    }
    fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError> {
        AggregateInstance::load(self, slot, state)
    }
    fn restart(&mut self) -> Result<(), PluginError> {
        AggregateInstance::restart(self)
    }
}

/// Checked window settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub kind: WindowKind,
    pub key: Option<Arc<str>>,
    pub event_time: Option<Arc<str>>,
    pub max_delay: i64,
    pub allowed_lateness: i64,
    pub max_future: i64,
}

/// One (window, key) group and its accumulator slot.
#[derive(Clone, Debug)]
struct Pane {
    end: i64,
    slot: u32,
    /// Emitted at least once; a later record makes it due again.
    fired: bool,
    /// Records folded in, counted when the pane turns out to be a replay (see `Windows::resumed`).
    rows: u64,
    /// Source progress folded into this pane and not yet passed on with a result.
    acks: Vec<Ack>,
}

/// Pane and session tables: foldhash, since a 1-minute window looks up a pane for every record.
type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// Rows a step set aside: (row, reason, is it late).
pub type Rejected = Vec<(usize, String, bool)>;

/// Window state and logic, independent of the pipeline plumbing so it can be tested directly.
pub struct Windows<A> {
    settings: Settings,
    acc: A,
    watermark: i64,
    /// Keys as ids; panes and the sets below hold ids.
    keys: KeyTable,
    panes: HashMap<(i64, KeyId), Pane>,
    /// Session starts per key, to find the sessions a record touches.
    sessions: HashMap<KeyId, Vec<i64>>,
    /// Panes to emit once the watermark reaches their end: (end, start, key). A pane is there exactly
    /// while it has not fired.
    due: Schedule,
    /// Panes to drop once the watermark reaches end + allowed lateness: (end + lateness, start, key).
    expiry: Schedule,
    free_slots: Vec<u32>,
    next_slot: u32,
    /// Scratch for [`order`]: each key's place in key order, by key id.
    rank: Vec<u32>,
    /// Largest event time seen, the event time of global results.
    max_time: i64,
    /// The watermark restored at a restart: every window ending at or before it was emitted before the
    /// restart. Kept apart from `watermark`, which restarts from the records read again: lifting it
    /// would make records of windows still open at the stop late (they were on time when first read).
    resumed: Option<i64>,
    /// Records skipped since the last `take_replayed` because their windows end at or before `resumed`.
    replayed: u64,
}

impl<A: Accumulators> Windows<A> {
    /// Why an event time cannot be used, if it cannot: outside the range windows can hold, or further
    /// ahead than `max_future` of the newest event time so far and of the clock.
    fn out_of_range(&self, ts: i64, now: i64) -> Option<String> {
        if !(-TIME_LIMIT_MS..=TIME_LIMIT_MS).contains(&ts) {
            return Some(format!(
                "time out of range: event time {ts} ms is beyond ±{TIME_LIMIT_MS} ms from the epoch"
            ));
        }
        let newest = self.max_time.max(now);
        let ahead = ts - newest;
        (ahead > self.settings.max_future).then(|| {
            format!(
                "time out of range: event time is {ahead} ms ahead of the newest event time and of the clock (max_future {} ms)",
                self.settings.max_future
            )
        })
    }

    pub fn new(settings: Settings, acc: A) -> Self {
        let schedule = || match settings.kind {
            WindowKind::Session { .. } => Schedule::ordered(),
            _ => Schedule::buckets(),
        };
        let (due, expiry) = (schedule(), schedule());
        Windows {
            settings,
            acc,
            watermark: i64::MIN,
            keys: KeyTable::default(),
            panes: HashMap::default(),
            sessions: HashMap::default(),
            due,
            expiry,
            free_slots: Vec::new(),
            next_slot: 0,
            rank: Vec::new(),
            max_time: i64::MIN,
            resumed: None,
            replayed: 0,
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Restores the watermark committed before a restart (never lowers an earlier one). The global
    /// window has no use for it: it is emitted only at the end of input, after which nothing commits.
    pub fn resume(&mut self, watermark: i64) {
        if self.settings.kind != WindowKind::Global {
            self.resumed = Some(self.resumed.map_or(watermark, |r| r.max(watermark)));
        }
    }

    /// The watermark to commit for a result emitted now: windows ending at or before it are emitted.
    /// `None` for the global window, and before any record.
    pub fn resume_point(&self) -> Option<i64> {
        if self.settings.kind == WindowKind::Global {
            return None;
        }
        let wm = self.watermark.max(self.resumed.unwrap_or(i64::MIN));
        (wm > i64::MIN).then_some(wm)
    }

    /// Records skipped as replays since the last call.
    pub fn take_replayed(&mut self) -> u64 {
        std::mem::take(&mut self.replayed)
    }

    /// Whether every window of a record at `ts` was emitted before the restart. Sessions are decided
    /// when they fire (in `fire`): a record alone does not say where its session ends.
    fn is_replay(&self, ts: i64) -> bool {
        let Some(resumed) = self.resumed else {
            return false;
        };
        let last_end = match self.settings.kind {
            WindowKind::Tumbling { size } => tumbling::assign(ts, size).1,
            WindowKind::Hopping { size, slide } => hopping::assign(ts, size, slide)
                .next()
                .map_or(i64::MIN, |w| w.1),
            WindowKind::Session { .. } | WindowKind::Global => return false,
        };
        last_end <= resumed
    }

    /// Back to a stage that has seen no record: the plugin restarted (every accumulator gone), no
    /// pane, no watermark.
    pub fn clear(&mut self) -> Result<(), PluginError> {
        self.acc.restart()?;
        self.watermark = i64::MIN;
        self.keys = KeyTable::default();
        self.panes.clear();
        self.sessions.clear();
        self.due.clear();
        self.expiry.clear();
        self.free_slots.clear();
        self.next_slot = 0;
        self.max_time = i64::MIN;
        self.resumed = None;
        self.replayed = 0;
        Ok(())
    }

    fn alloc(&mut self) -> u32 {
        alloc_slot(&mut self.free_slots, &mut self.next_slot)
    }

    /// Folds a batch in; returns the results that became due and the rows set aside.
    pub fn process(&mut self, batch: &Batch) -> Result<(Option<Batch>, Rejected), PluginError> {
        let mut rejected: Rejected = Vec::new();
        let lateness = self.settings.allowed_lateness;
        let time_col = self
            .settings
            .event_time
            .as_ref()
            .and_then(|f| batch.column(f));
        let key_col = self.settings.key.as_ref().and_then(|f| batch.column(f));
        // String keys: one key per dictionary entry of the batch, so rows only copy a pointer.
        let dict_keys: Option<(Vec<KeyId>, &[u32])> = key_col
            .and_then(|c| c.array.as_dictionary_opt::<UInt32Type>())
            .map(|d| {
                let keys = d
                    .values()
                    .as_string::<i32>()
                    .iter()
                    .map(|s| self.keys.str_id(s.unwrap_or_default()))
                    .collect();
                (keys, &d.keys().values()[..])
            });

        // Event time, key and lateness, row by row in arrival order: the watermark moves per record, so
        // what counts as late does not depend on how records were batched.
        let mut valid = Vec::with_capacity(batch.len);
        let mut meta = Vec::with_capacity(batch.len);
        // The clock, for `max_future`: once per batch is precise enough for a bound of minutes.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for row in 0..batch.len {
            let ts = match (&self.settings.event_time, time_col) {
                (None, _) => batch.time[row],
                (Some(name), col) => match col.map(|c| c.value(row)).as_ref() {
                    Some(Value::Int(t) | Value::Time(t)) => *t,
                    Some(Value::Float(t)) if t.is_finite() => *t as i64,
                    Some(Value::Null) | None => {
                        rejected.push((row, format!("missing event time field `{name}`"), false));
                        continue;
                    }
                    Some(v) => {
                        rejected.push((
                            row,
                            format!(
                                "event time field `{name}` must be milliseconds since the epoch, found {}",
                                v.type_name()
                            ),
                            false,
                        ));
                        continue;
                    }
                },
            };
            let global = self.settings.kind == WindowKind::Global;
            if !global {
                if let Some(reason) = self.out_of_range(ts, now) {
                    rejected.push((row, reason, false));
                    continue;
                }
            }
            let key = match (&self.settings.key, key_col) {
                (None, _) => self.keys.id(Key(Value::Null)),
                (Some(_), Some(c)) if dict_keys.is_some() && c.array.is_valid(row) => {
                    let (keys, codes) = dict_keys.as_ref().expect("checked");
                    keys[codes[row] as usize]
                }
                (Some(name), col) => match col.map(|c| c.value(row)) {
                    Some(Value::Null) | None => {
                        rejected.push((row, format!("missing key field `{name}`"), false));
                        continue;
                    }
                    Some(Value::Json(_)) => {
                        rejected.push((
                            row,
                            format!("key field `{name}` is a JSON array or object; a key must be a string, number or boolean"),
                            false,
                        ));
                        continue;
                    }
                    Some(v) => self.keys.id(Key(v)),
                },
            };
            // Before the lateness check: such a record was counted, or dead-lettered as late, before the
            // restart. It is not dead-lettered again (that would repeat dead letters at every restart);
            // a record that is new but late for those windows is counted the same way, which is the price
            // of not knowing where reading stopped. It moves the watermark as it did the first time.
            if self.is_replay(ts) {
                self.replayed += 1;
                self.watermark = self
                    .watermark
                    .max(ts.saturating_sub(self.settings.max_delay));
                self.max_time = self.max_time.max(ts);
                continue;
            }
            // The global window is open until the end of input, so nothing is late for it.
            if !global && ts < self.watermark.saturating_sub(lateness) {
                let behind = self.watermark - ts;
                rejected.push((
                    row,
                    format!("late: event time is {behind} ms behind the watermark (allowed lateness {lateness} ms)"),
                    true,
                ));
                continue;
            }
            self.watermark = self
                .watermark
                .max(ts.saturating_sub(self.settings.max_delay));
            self.max_time = self.max_time.max(ts);
            valid.push(row as u32);
            meta.push((ts, key));
        }

        // The plugin's declared fields must fit its declared types.
        let converted = to_wit(batch, self.acc.inputs(), Some(&valid));
        for (row, reason) in converted.rejected {
            rejected.push((row, reason, false));
        }
        let meta: Vec<(i64, KeyId)> = {
            let mut it = valid.iter().zip(meta);
            converted
                .kept
                .iter()
                .map(|k| {
                    it.by_ref()
                        .find(|(v, _)| *v == k)
                        .map(|(_, m)| m)
                        .expect("kept rows are valid rows")
                })
                .collect()
        };

        // Assign windows; a hopping record goes to several, so the batch sent to the plugin repeats it.
        let mut pick: Vec<u32> = Vec::with_capacity(meta.len());
        let mut slots: Vec<u32> = Vec::with_capacity(meta.len());
        for (i, (ts, key)) in meta.into_iter().enumerate() {
            match self.settings.kind {
                WindowKind::Tumbling { size } => {
                    let slot = self.pane(tumbling::assign(ts, size), key, &batch.acks);
                    pick.push(i as u32);
                    slots.push(slot);
                }
                WindowKind::Hopping { size, slide } => {
                    for bounds in hopping::assign(ts, size, slide) {
                        if bounds.1 + lateness <= self.watermark
                            || self.resumed.is_some_and(|r| bounds.1 <= r)
                        {
                            continue; // that window has closed for good; the record still counts in the others
                        }
                        let slot = self.pane(bounds, key, &batch.acks);
                        pick.push(i as u32);
                        slots.push(slot);
                    }
                }
                WindowKind::Global => {
                    let slot = self.pane(global::BOUNDS, key, &batch.acks);
                    pick.push(i as u32);
                    slots.push(slot);
                }
                WindowKind::Session { gap } => {
                    // Merging moves accumulators, so rows already assigned must be folded in first.
                    let slot = self.session(
                        ts,
                        gap,
                        key,
                        &batch.acks,
                        &converted.batch,
                        &mut pick,
                        &mut slots,
                        &converted.kept,
                        &mut rejected,
                    )?;
                    pick.push(i as u32);
                    slots.push(slot);
                }
            }
        }
        self.add(
            &converted.batch,
            &mut pick,
            &mut slots,
            &converted.kept,
            &mut rejected,
        )?;
        self.keys.sweep();
        let emitted = self.fire(self.watermark)?;
        Ok((emitted, rejected))
    }

    /// Folds the pending (row, slot) pairs into the plugin and clears them.
    fn add(
        &mut self,
        input: &wit::Batch,
        pick: &mut Vec<u32>,
        slots: &mut Vec<u32>,
        kept: &[u32],
        rejected: &mut Rejected,
    ) -> Result<(), PluginError> {
        if slots.is_empty() {
            return Ok(());
        }
        let identity = pick.len() == input.rows as usize
            && pick.iter().enumerate().all(|(i, &p)| i as u32 == p);
        let gathered;
        let input = if identity {
            input
        } else {
            gathered = gather(input, pick);
            &gathered
        };
        for e in self.acc.add(slots, input)? {
            let Some(&p) = pick.get(e.row as usize) else {
                continue;
            };
            rejected.push((kept[p as usize] as usize, e.reason, false));
        }
        pick.clear();
        slots.clear();
        Ok(())
    }

    /// The slot of a fixed window's pane, created when new; a fired pane that gets a record is due again.
    fn pane(&mut self, (start, end): (i64, i64), key: KeyId, acks: &[Ack]) -> u32 {
        use hashbrown::hash_map::Entry;
        // One hash lookup whether the pane is new or not.
        match self.panes.entry((start, key)) {
            Entry::Occupied(mut e) => {
                let p = e.get_mut();
                Ack::merge_into(&mut p.acks, acks);
                p.rows += 1;
                if p.fired {
                    p.fired = false;
                    self.due.insert(end, start, key);
                }
                p.slot
            }
            Entry::Vacant(e) => {
                let slot = alloc_slot(&mut self.free_slots, &mut self.next_slot);
                e.insert(Pane {
                    end,
                    slot,
                    fired: false,
                    rows: 1,
                    acks: acks.to_vec(),
                });
                self.keys.acquire(key);
                self.due.insert(end, start, key);
                let lateness = self.settings.allowed_lateness;
                self.expiry.insert(end.saturating_add(lateness), start, key);
                slot
            }
        }
    }

    /// The slot of the session a record at `ts` belongs to, merging the sessions it bridges.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        ts: i64,
        gap: i64,
        key: KeyId,
        acks: &[Ack],
        input: &wit::Batch,
        pick: &mut Vec<u32>,
        slots: &mut Vec<u32>,
        kept: &[u32],
        rejected: &mut Rejected,
    ) -> Result<u32, PluginError> {
        let lateness = self.settings.allowed_lateness;
        let mut bounds = session::assign(ts, gap);
        let starts = self.sessions.entry(key).or_default();
        let touching: Vec<i64> = starts
            .iter()
            .copied()
            .filter(|s| {
                let p = &self.panes[&(*s, key)];
                session::overlaps((*s, p.end), bounds)
            })
            .collect();
        if touching.len() == 1 {
            let start = touching[0];
            let p = self
                .panes
                .get_mut(&(start, key))
                .expect("listed session exists");
            if start <= bounds.0 && p.end >= bounds.1 && !p.fired {
                Ack::merge_into(&mut p.acks, acks);
                p.rows += 1;
                return Ok(p.slot);
            }
        }
        if touching.len() > 1 {
            self.add(input, pick, slots, kept, rejected)?;
        }
        // Take the touching panes out, fold them into one, and put the grown session back. The grown
        // session holds its key first, so releasing the panes it replaces cannot forget the key.
        self.keys.acquire(key);
        let mut target: Option<u32> = None;
        let mut merged_acks = acks.to_vec();
        let mut rows = 1;
        for start in &touching {
            let p = self
                .panes
                .remove(&(*start, key))
                .expect("listed session exists");
            self.keys.release(key);
            self.due.remove(p.end, *start, key);
            self.expiry
                .remove(p.end.saturating_add(lateness), *start, key);
            bounds = (bounds.0.min(*start), bounds.1.max(p.end));
            Ack::merge_into(&mut merged_acks, &p.acks);
            rows += p.rows;
            match target {
                None => target = Some(p.slot),
                Some(t) => {
                    self.acc.merge(t, p.slot)?;
                    self.free_slots.push(p.slot);
                }
            }
        }
        let starts = self.sessions.get_mut(&key).expect("entry made above");
        starts.retain(|s| !touching.contains(s));
        starts.push(bounds.0);
        let slot = target.unwrap_or_else(|| self.alloc());
        self.panes.insert(
            (bounds.0, key),
            Pane {
                end: bounds.1,
                slot,
                fired: false,
                rows,
                acks: merged_acks,
            },
        );
        self.due.insert(bounds.1, bounds.0, key);
        self.expiry
            .insert(bounds.1.saturating_add(lateness), bounds.0, key);
        Ok(slot)
    }

    /// One pane as the plugin's `finish` sees it.
    fn plugin_pane(&self, entry: &(i64, i64, KeyId)) -> PluginPanes {
        let slot = self.panes[&(entry.1, entry.2)].slot;
        plugin_panes(
            &self.settings,
            &self.keys,
            vec![slot],
            std::slice::from_ref(entry),
        )
    }

    /// Emits every pane due at `watermark`, then drops the panes past their lateness.
    fn fire(&mut self, watermark: i64) -> Result<Option<Batch>, PluginError> {
        let mut ready = Vec::new();
        self.due.drain_until(watermark, &mut ready);
        if let Some(r) = self.resumed {
            // A session rebuilt from records read again after a restart, ending where the restored
            // watermark says it was emitted before: a replay. Its records are done (their result was
            // written then), so its acks are let go.
            let (panes, replayed) = (&mut self.panes, &mut self.replayed);
            ready.retain(|&(end, start, key)| {
                if end > r {
                    return true;
                }
                let pane = panes.get_mut(&(start, key)).unwrap();
                pane.fired = true;
                *replayed += std::mem::take(&mut pane.rows);
                pane.acks.clear();
                false
            });
        }
        // Deterministic order: by window, then key.
        order(&self.keys, &mut self.rank, &mut ready);
        let out = if ready.is_empty() {
            None
        } else {
            // One lookup per pane: it is marked fired and its acks taken before `finish` is called.
            // Should that call fail, the state is not used again as it is: the run stops, or the
            // stage rebuilds its state from a snapshot (see `recovery`).
            let mut acks = Vec::new();
            let slots: Vec<u32> = ready
                .iter()
                .map(|e| {
                    let pane = self.panes.get_mut(&(e.1, e.2)).expect("a due pane is open");
                    pane.fired = true;
                    if !pane.acks.is_empty() {
                        Ack::merge_into(&mut acks, &std::mem::take(&mut pane.acks));
                    }
                    pane.slot
                })
                .collect();
            let panes = plugin_panes(&self.settings, &self.keys, slots, &ready);
            let results = self.acc.finish(&panes)?;
            drop(panes);
            let mut batch = self.results(&ready, results)?;
            batch.acks = acks;
            Some(batch)
        };
        let mut expiring = ready;
        expiring.clear();
        self.expiry.drain_until(watermark, &mut expiring);
        let mut expired = Vec::with_capacity(expiring.len());
        for (_, start, key) in expiring {
            if let Some(p) = self.panes.remove(&(start, key)) {
                expired.push(p.slot);
                self.keys.release(key);
                // A fired pane left `due` when it fired. (Panes of fixed windows have always fired by
                // now: `due` was drained up to this watermark above, and lateness is not negative.)
                if !p.fired {
                    self.due.remove(p.end, start, key);
                }
                if let Some(starts) = self.sessions.get_mut(&key) {
                    starts.retain(|s| *s != start);
                    if starts.is_empty() {
                        self.sessions.remove(&key);
                    }
                }
            }
        }
        if !expired.is_empty() {
            self.acc.free(&expired)?;
            self.free_slots.extend(expired);
        }
        Ok(out)
    }

    /// Result rows: `window_start`, `window_end`, the key, then the plugin's fields; each row carries
    /// the window and key of the pane `results.rows` names.
    fn results(
        &self,
        ready: &[(i64, i64, KeyId)],
        results: Finished,
    ) -> Result<Batch, PluginError> {
        let bad = |message: String| PluginError::Trap {
            what: "aggregate".into(),
            message,
        };
        let n = results.rows.len();
        if results.columns.len() != self.acc.outputs().len() {
            return Err(bad(format!(
                "`finish` returned {} columns for {} declared outputs",
                results.columns.len(),
                self.acc.outputs().len()
            )));
        }
        if let Some(r) = results.rows.iter().find(|r| **r as usize >= ready.len()) {
            return Err(bad(format!(
                "`finish` returned a row for pane {r}, but was given {} panes",
                ready.len()
            )));
        }
        let rows: Vec<&(i64, i64, KeyId)> =
            results.rows.iter().map(|r| &ready[*r as usize]).collect();
        let global = |end: i64, start: i64| global::is_global((start, end));
        let bound = |pick: fn(i64, i64) -> i64| {
            column::optional_times(
                rows.iter()
                    .map(|(e, s, _)| (!global(*e, *s)).then(|| pick(*s, *e))),
            )
        };
        let mut columns = vec![
            Column::new("window_start", bound(|s, _| s)),
            Column::new("window_end", bound(|_, e| e)),
        ];
        if let Some(key) = &self.settings.key {
            let ids = rows.iter().map(|(_, _, k)| *k);
            let array = string_keys(&self.keys, ids.clone()).unwrap_or_else(|| {
                let keys: Vec<Value> = ids.map(|k| self.keys.key(k).0.clone()).collect();
                column::from_values(&keys)
            });
            columns.push(Column::new(key.clone(), array));
        }
        for (col, field) in results.columns.into_iter().zip(self.acc.outputs()) {
            let array = crate::plugin::from_wit_nullable(col, n, field).map_err(bad)?;
            columns.push(Column::new(field.name.clone(), array));
        }
        Ok(Batch {
            len: n,
            // A result's event time is the last instant of its window (the newest record, for global).
            time: rows
                .iter()
                .map(|(e, s, _)| if global(*e, *s) { self.max_time } else { e - 1 })
                .collect(),
            origin: vec![Default::default(); n],
            columns,
            acks: Vec::new(),
        })
    }

    /// End of input: the watermark jumps to the end of time and every window is emitted.
    pub fn finish(&mut self) -> Result<Option<Batch>, PluginError> {
        self.watermark = i64::MAX;
        self.fire(i64::MAX)
    }
}

/// Sorts panes to emit by window end, start, then key (by value, not id), the order results go out in.
/// The few distinct keys are sorted by value once (stable, from id order, as a sort of the panes was
/// before), so the panes sort by integers; (end, start, key) is unique, so an unstable sort is exact.
fn order(keys: &KeyTable, rank: &mut Vec<u32>, ready: &mut [schedule::Entry]) {
    if ready.len() < 2 {
        return;
    }
    let top = *ready.iter().map(|(_, _, k)| k).max().expect("not empty") as usize;
    if rank.len() <= top {
        rank.resize(top + 1, 0);
    }
    // The distinct keys, without sorting every pane's: marked in `rank`, then listed once each.
    const UNSEEN: u32 = u32::MAX;
    for &(_, _, key) in ready.iter() {
        rank[key as usize] = UNSEEN;
    }
    let mut ids: Vec<KeyId> = Vec::new();
    for &(_, _, key) in ready.iter() {
        if rank[key as usize] == UNSEEN {
            rank[key as usize] = 0;
            ids.push(key);
        }
    }
    ids.sort_unstable();
    ids.sort_by(|a, b| keys.key(*a).cmp(keys.key(*b)));
    for (i, id) in ids.iter().enumerate() {
        rank[*id as usize] = i as u32;
    }
    // Buckets come out by end, and a fixed window's start follows from its end: then only the panes of
    // each window need sorting, by key.
    if ready.is_sorted_by_key(|&(end, start, _)| (end, start)) {
        for window in ready.chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1)) {
            window.sort_unstable_by_key(|&(_, _, key)| rank[key as usize]);
        }
    } else {
        ready.sort_unstable_by_key(|&(end, start, key)| (end, start, rank[key as usize]));
    }
}

/// The key column of result rows when every key is a string: the column `column::from_values` makes of
/// them (a dictionary, its strings in order of first use), built from the key ids without copying a key
/// per row or hashing its string. `None` when some key is not a string, or there is no row.
fn string_keys(
    keys: &KeyTable,
    ids: impl Iterator<Item = KeyId> + Clone,
) -> Option<arrow_array::ArrayRef> {
    ids.clone().next()?;
    let mut first = FirstUse::new(ids.clone());
    let mut dict: Vec<&str> = Vec::new();
    let mut codes = Vec::with_capacity(ids.size_hint().0);
    for id in ids {
        let (code, new) = first.code(id);
        if new {
            let Value::Str(s) = &keys.key(id).0 else {
                return None;
            };
            dict.push(s);
        }
        codes.push(code);
    }
    column::strings(&dict, codes)
}

/// Codes for key ids in order of first use (the first id seen is 0), for a dictionary of the keys.
/// Looked up in a table indexed by id when the ids are dense enough, else in a map: a few panes firing
/// among a million keys must not cost a table of a million entries on every fire.
struct FirstUse {
    dense: Vec<u32>,
    sparse: hashbrown::HashMap<KeyId, u32, foldhash::fast::FixedState>,
    next: u32,
}

impl FirstUse {
    fn new(ids: impl Iterator<Item = KeyId>) -> Self {
        let (n, top) = ids.fold((0, 0), |(n, top), id| (n + 1, top.max(id as usize)));
        let dense = if top < 4 * n + 1024 {
            vec![u32::MAX; top + 1]
        } else {
            Vec::new()
        };
        FirstUse {
            dense,
            sparse: hashbrown::HashMap::default(),
            next: 0,
        }
    }

    /// The id's code, and whether this is its first use.
    fn code(&mut self, id: KeyId) -> (u32, bool) {
        let c = match self.dense.get_mut(id as usize) {
            Some(c) => c,
            None => self.sparse.entry(id).or_insert(u32::MAX),
        };
        if *c != u32::MAX {
            return (*c, false);
        }
        *c = self.next;
        self.next += 1;
        (*c, true)
    }
}

/// The panes as the plugin's `finish` sees them (ABI 0.4): in columns, made from the key ids, so a
/// string key is copied once per call however many panes (windows) share it, and no pane makes a
/// string of its own. `slots[i]` is the slot of pane `ready[i]`.
fn plugin_panes(
    settings: &Settings,
    keys: &KeyTable,
    slots: Vec<u32>,
    ready: &[(i64, i64, KeyId)],
) -> PluginPanes {
    // A stage has one kind of window: its panes are all global or all bounded.
    let bounded = ready
        .first()
        .is_some_and(|&(end, start, _)| !global::is_global((start, end)));
    debug_assert!(ready
        .iter()
        .all(|&(end, start, _)| global::is_global((start, end)) != bounded));
    let bounds = bounded.then(|| Bounds {
        starts: ready.iter().map(|e| e.1).collect(),
        ends: ready.iter().map(|e| e.0).collect(),
    });
    let keys = match settings.key {
        None => PluginKeys::AllNull,
        Some(_) => key_column(keys, ready.iter().map(|e| e.2)),
    };
    PluginPanes {
        slots,
        bounds,
        keys,
    }
}

/// The type of a key in a key column (since ABI 0.2 a timestamp key is its milliseconds and a JSON
/// key its text); `None` for a null key.
fn key_type(key: &Key) -> Option<KeyType> {
    Some(match &key.0 {
        Value::Null => return None,
        Value::Bool(_) => KeyType::Boolean,
        Value::Int(_) | Value::Time(_) => KeyType::Int,
        Value::Float(_) => KeyType::Float,
        Value::Str(_) | Value::Json(_) => KeyType::Str,
    })
}

/// The panes' keys, one per pane, given by id: one column when the keys are of one type (a string
/// column's dictionary holds each key once, in order of first use, packed in one string), else a value
/// per pane.
fn key_column(keys: &KeyTable, ids: impl Iterator<Item = KeyId> + Clone) -> PluginKeys {
    let (ty, valid) = match key_shape(ids.clone().map(|id| key_type(keys.key(id)))) {
        KeyShape::AllNull => return PluginKeys::AllNull,
        KeyShape::Mixed => {
            return PluginKeys::Mixed(ids.map(|id| key_value(keys.key(id))).collect())
        }
        KeyShape::Column(ty, valid) => (ty, valid),
    };
    let values = match ty {
        KeyType::Boolean => KeyValues::Boolean(
            ids.map(|id| matches!(keys.key(id).0, Value::Bool(true)))
                .collect(),
        ),
        KeyType::Int => KeyValues::Int(
            ids.map(|id| match keys.key(id).0 {
                Value::Int(i) | Value::Time(i) => i,
                _ => 0,
            })
            .collect(),
        ),
        KeyType::Float => KeyValues::Float(
            ids.map(|id| match keys.key(id).0 {
                Value::Float(f) => f,
                _ => 0.0,
            })
            .collect(),
        ),
        KeyType::Str => {
            let mut first = FirstUse::new(ids.clone());
            let mut dict = wit::PackedStrings::new();
            let codes = ids
                .map(|id| {
                    let (code, new) = first.code(id);
                    if new {
                        match &keys.key(id).0 {
                            Value::Str(s) => dict.push(s),
                            Value::Json(j) => dict.push(j),
                            // A null key's placeholder: `valid` says it is null.
                            _ => dict.push(""),
                        };
                    }
                    code
                })
                .collect();
            KeyValues::Str(KeyDict { dict, codes })
        }
    };
    PluginKeys::Column(KeyColumn { values, valid })
}

/// A free accumulator slot, or a new one.
fn alloc_slot(free_slots: &mut Vec<u32>, next_slot: &mut u32) -> u32 {
    free_slots.pop().unwrap_or_else(|| {
        *next_slot += 1;
        *next_slot - 1
    })
}

/// A key as `finish` sees it in a list of keys of different types (ABI 0.4's `mixed`): typed, a
/// timestamp as milliseconds, a JSON key as its text; `None` for a null key.
fn key_value(key: &Key) -> Option<wit::Value> {
    Some(match &key.0 {
        Value::Null => return None,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) | Value::Time(i) => wit::Value::Int(*i),
        Value::Float(f) => wit::Value::Float(*f),
        Value::Str(s) => wit::Value::Str(s.to_string()),
        Value::Json(j) => wit::Value::Str(j.to_string()),
    })
}

/// The rows of an ABI batch listed in `rows`, in that order.
fn gather(input: &wit::Batch, rows: &[u32]) -> wit::Batch {
    let columns = input
        .columns
        .iter()
        .map(|c| match c {
            wit::Column::Float(v) => {
                wit::Column::Float(rows.iter().map(|&r| v[r as usize]).collect())
            }
            wit::Column::Int(v) => wit::Column::Int(rows.iter().map(|&r| v[r as usize]).collect()),
            wit::Column::Boolean(v) => {
                wit::Column::Boolean(rows.iter().map(|&r| v[r as usize]).collect())
            }
            wit::Column::Str(d) => wit::Column::Str(wit::DictColumn {
                dict: d.dict.clone(),
                codes: rows.iter().map(|&r| d.codes[r as usize]).collect(),
            }),
        })
        .collect();
    wit::Batch {
        rows: rows.len() as u32,
        columns,
    }
}

pub struct WindowOperator {
    windows: Windows<AggregateInstance>,
    /// Whether the first batch came: the restored watermark is read then, when a source has restored it.
    started: bool,
    /// What rebuilds the state after the plugin fails, with `on_error = "dead-letter"`; `None` with
    /// `"fail"`.
    recovery: Option<Recovery>,
    /// Plugin failures survived, for the warnings.
    failures: u64,
}

/// Most windows whose result failed at the end of input that are tried one by one (each failure
/// rebuilds the state); the rest go to the dead-letter output untried.
const MAX_FAILED_AT_END: u32 = 20;

/// A plugin failure a window stage does not survive: a stop signal, or `on_error = "fail"`.
fn fatal(e: &PluginError, recovery: &Option<Recovery>) -> bool {
    matches!(e, PluginError::Interrupted { .. }) || recovery.is_none()
}

impl WindowOperator {
    fn handle(
        &mut self,
        out: &mut Output,
        batch: &Batch,
        step: (Option<Batch>, Rejected),
        resume_point: Option<i64>,
    ) {
        let (emitted, rejected) = step;
        for (row, reason, late) in rejected {
            if late {
                out.late_row(batch, row, &reason);
            } else {
                out.dead_row(batch, row, &reason);
            }
        }
        let replayed = self.windows.take_replayed();
        if replayed > 0 {
            out.replayed(replayed);
        }
        if let Some(mut b) = emitted {
            if let Some(wm) = resume_point {
                // First, so it reports before the source acks let the batches commit (see `Progress`).
                let token = out.progress().written(out.stage(), wm);
                b.acks.insert(0, token);
            }
            out.emit(b);
        }
    }
}

impl WindowOperator {
    /// A failure survived: counted, and said once (the count comes at the end).
    fn warn(&mut self, out: &Output, cause: &str, what: &str) {
        self.failures += 1;
        if self.failures == 1 {
            eprintln!(
                "warning: stage `{}`: {cause}; {what}, and the plugin restarted with its open windows rebuilt (`on_error = \"fail\"` stops the run instead)",
                out.stage()
            );
        }
    }

    /// Restarts the plugin and rebuilds the open windows (see `recovery`).
    fn rebuild(&mut self) -> Result<(), StageError> {
        let recovery = self
            .recovery
            .as_ref()
            .expect("only with on_error = dead-letter");
        recovery.rebuild(&mut self.windows).map_err(|e| {
            StageError::with(
                "the plugin failed again while the stage rebuilt its open windows after a failure",
                e,
            )
        })
    }

    /// End of input after `finish` failed for every window at once: the windows one by one, each that
    /// fails named in the dead-letter output, the state rebuilt after each failure.
    fn finish_one_by_one(
        &mut self,
        out: &mut Output,
        point: Option<i64>,
    ) -> Result<(), StageError> {
        let mut handled = 0usize;
        let mut failed = 0u32;
        loop {
            self.rebuild()?;
            for _ in 0..handled {
                let due = self.windows.next_due_at_end().expect("the same panes");
                self.windows.skip_pane(due);
            }
            loop {
                let Some(due) = self.windows.next_due_at_end() else {
                    // Nothing due: this only lets the expired panes go.
                    let rest = self
                        .windows
                        .finish()
                        .map_err(|e| StageError::with("plugin call failed", e))?;
                    self.handle(out, &Batch::default(), (rest, Vec::new()), point);
                    return Ok(());
                };
                handled += 1;
                let cause = if failed >= MAX_FAILED_AT_END {
                    self.windows.skip_pane(due);
                    format!("not tried: the plugin failed for {MAX_FAILED_AT_END} windows before")
                } else {
                    match self.windows.finish_pane(due) {
                        Ok(batch) => {
                            self.handle(out, &Batch::default(), (Some(batch), Vec::new()), point);
                            continue;
                        }
                        Err(e) if fatal(&e, &self.recovery) => {
                            return Err(StageError::with("plugin call failed", e))
                        }
                        Err(e) => e.to_string(),
                    }
                };
                let reason = format!(
                    "plugin failed at the end of input, so this window's result is lost: {cause}"
                );
                out.dead_result(self.windows.describe(due), &reason);
                if failed < MAX_FAILED_AT_END {
                    failed += 1;
                    self.warn(
                        out,
                        &cause,
                        "the window's result went to the dead-letter output",
                    );
                    break; // the instance is unusable: rebuild, then go on after this window
                }
            }
        }
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, batch: Arc<Batch>, out: &mut Output) -> Result<(), StageError> {
        if !self.started {
            self.started = true;
            // A source restores before its first batch, so this is the time to look.
            if let Some(wm) = out.progress().restored(out.stage()) {
                self.windows.resume(wm);
            }
        }
        if let Some(r) = &mut self.recovery {
            r.before(&mut self.windows)
                .map_err(|e| StageError::with("cannot save the open windows", e))?;
        }
        match self.windows.process(&batch) {
            Ok(step) => {
                let point = self.windows.resume_point();
                self.handle(out, &batch, step, point);
                if let Some(r) = &mut self.recovery {
                    r.after(batch);
                }
                Ok(())
            }
            Err(e) if fatal(&e, &self.recovery) => Err(StageError::with("plugin call failed", e)),
            Err(e) => {
                // Whatever the failed call did to the state is undone by the rebuild; the batch's
                // records, none of which counted, go to the dead-letter output.
                self.rebuild()?;
                let cause = e.to_string();
                let reason = format!("plugin failed: {cause}");
                for row in 0..batch.len {
                    out.dead_row(&batch, row, &reason);
                }
                self.warn(
                    out,
                    &cause,
                    &format!("the batch's {} records were dead-lettered", batch.len),
                );
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        // The watermark before the end of input: the end flushes windows the watermark has not reached,
        // and records for those may still come in a later run.
        let point = self.windows.resume_point();
        match self.windows.finish() {
            Ok(emitted) => self.handle(out, &Batch::default(), (emitted, Vec::new()), point),
            Err(e) if fatal(&e, &self.recovery) => {
                return Err(StageError::with("plugin call failed", e))
            }
            Err(_) => self.finish_one_by_one(out, point)?,
        }
        if self.failures > 1 {
            eprintln!(
                "warning: stage `{}`: the plugin failed {} times in all; the dead-letter output has what it failed on",
                out.stage(),
                self.failures
            );
        }
        Ok(())
    }

    fn checkpoint(&mut self, _: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        self.windows
            .save()
            .map(Some)
            .map_err(|e| StageError::with("cannot save the window state", e))
    }

    fn watermark(&self) -> Option<i64> {
        Some(self.windows.watermark()).filter(|&w| w != i64::MIN)
    }

    fn handover(&mut self, _: &mut Output) -> Result<crate::topology::Handover, StageError> {
        self.hand_over()
    }

    fn take_over(
        &mut self,
        handover: &mut crate::topology::Handover,
        reset: bool,
    ) -> Result<(), StageError> {
        self.take_over_from(handover, reset)
    }

    fn fields(&self) -> crate::topology::Fields {
        let settings = &self.windows.settings;
        let acc = &self.windows.acc;
        let key = settings.key.iter().map(|k| format!("{k} (key)"));
        let time = settings
            .event_time
            .iter()
            .map(|t| format!("{t} (event time)"));
        let bounds = ["window_start", "window_end"].map(String::from);
        crate::topology::Fields {
            plugin: Some(acc.what().to_string()),
            reads: key
                .clone()
                .chain(time)
                .chain(acc.inputs().iter().map(crate::topology::describe_field))
                .collect(),
            writes: bounds
                .into_iter()
                .chain(key)
                .chain(acc.outputs().iter().map(crate::topology::describe_field))
                .collect(),
            drops: Vec::new(),
            reads_nothing: false,
        }
    }

    fn reset(&mut self) -> Result<(), StageError> {
        if let Some(r) = &mut self.recovery {
            r.reset();
        }
        self.windows
            .clear()
            .map_err(|e| StageError::with("cannot restart the plugin", e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        // Restored state replaces the committed-watermark logic: nothing read again is a replay.
        self.started = true;
        if let Some(r) = &mut self.recovery {
            r.reset();
        }
        self.windows
            .load(&state)
            .map_err(|e| StageError::with("cannot restore the window state", e))
    }
}

#[cfg(test)]
mod tests;
