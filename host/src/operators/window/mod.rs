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

mod columns;
mod config;
mod global;
mod handover;
mod hopping;
mod keys;
mod operator;
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
use arrow_buffer::NullBuffer;
use keys::{KeyId, KeyTable};
use recovery::Recovery;
use schedule::Schedule;
use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

#[cfg(test)]
use columns::FirstUse;
use columns::{alloc_slot, gather, order, plugin_panes, string_keys};
pub use config::{WindowConfig, WindowKind, WindowTable, TIME_LIMIT_MS};
pub use operator::WindowOperator;

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
        // String keys: one key per dictionary entry of the batch, so rows only copy a pointer; which
        // rows are null is read from the bitmap, not through the array's dynamic `is_valid` per row.
        let dict_keys: Option<(Vec<KeyId>, &[u32], Option<&NullBuffer>)> = key_col
            .and_then(|c| c.array.as_dictionary_opt::<UInt32Type>())
            .map(|d| {
                let keys = d
                    .values()
                    .as_string::<i32>()
                    .iter()
                    .map(|s| self.keys.str_id(s.unwrap_or_default()))
                    .collect();
                (keys, &d.keys().values()[..], d.nulls())
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
                (Some(_), Some(_))
                    if dict_keys
                        .as_ref()
                        .is_some_and(|(_, _, nulls)| nulls.is_none_or(|n| n.is_valid(row))) =>
                {
                    let (keys, codes, _) = dict_keys.as_ref().expect("checked");
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

#[cfg(test)]
mod tests;
