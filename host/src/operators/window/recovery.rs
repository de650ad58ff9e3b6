//! `on_error = "dead-letter"` for window stages. A plugin that fails on a batch takes the open windows
//! it held with it (a trap leaves an instance unusable), so the stage keeps what it needs to rebuild
//! them: a snapshot of its state (the host's tables and each open accumulator's `save` bytes) and the
//! batches folded in since. After a failure it restarts the plugin, loads the snapshot, folds those
//! batches in again with their output discarded (it went out the first time), and dead-letters the
//! batch that failed, so every other record is counted exactly once.
//!
//! Snapshots are taken every [`MIN_ROWS`] rows, or more rarely with many open windows (every four rows
//! per open window), so saving costs at most a quarter of a `save` call per row; the batches kept are
//! shared with the rest of the pipeline, not copied.

use super::{global, Accumulators, KeyId, Pane, Schedule, Windows};
use crate::plugin::PluginError;
use crate::record::Batch;
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// Rows folded in between snapshots, at least.
const MIN_ROWS: usize = 16_384;

/// A window stage's state at one point: its tables, and each open pane's accumulator as bytes.
pub struct Snapshot {
    watermark: i64,
    keys: super::keys::KeyTable,
    panes: super::HashMap<(i64, KeyId), Pane>,
    sessions: super::HashMap<KeyId, Vec<i64>>,
    due: Schedule,
    expiry: Schedule,
    free_slots: Vec<u32>,
    next_slot: u32,
    max_time: i64,
    resumed: Option<i64>,
    accumulators: Vec<(u32, Vec<u8>)>,
}

/// A pane due at the end of input: (end, start, key).
pub type Due = (i64, i64, KeyId);

impl<A: Accumulators> Windows<A> {
    fn snapshot(&mut self) -> Result<Snapshot, PluginError> {
        let mut accumulators = Vec::with_capacity(self.panes.len());
        for pane in self.panes.values() {
            accumulators.push((pane.slot, self.acc.save(pane.slot)?));
        }
        Ok(Snapshot {
            watermark: self.watermark,
            keys: self.keys.clone(),
            panes: self.panes.clone(),
            sessions: self.sessions.clone(),
            due: self.due.clone(),
            expiry: self.expiry.clone(),
            free_slots: self.free_slots.clone(),
            next_slot: self.next_slot,
            max_time: self.max_time,
            resumed: self.resumed,
            accumulators,
        })
    }

    /// Restarts the plugin and puts the state of `s` back, accumulators in the same slots.
    fn rebuild(&mut self, s: &Snapshot) -> Result<(), PluginError> {
        self.acc.restart()?;
        self.watermark = s.watermark;
        self.keys = s.keys.clone();
        self.panes = s.panes.clone();
        self.sessions = s.sessions.clone();
        self.due = s.due.clone();
        self.expiry = s.expiry.clone();
        self.free_slots = s.free_slots.clone();
        self.next_slot = s.next_slot;
        self.max_time = s.max_time;
        self.resumed = s.resumed;
        self.replayed = 0;
        for (slot, bytes) in &s.accumulators {
            self.acc.load(*slot, bytes)?;
        }
        Ok(())
    }

    /// End of input, one window at a time (after `finish` failed for all at once): the next pane due,
    /// in a fixed order, so that after a rebuild the same panes come in the same order.
    pub fn next_due_at_end(&mut self) -> Option<Due> {
        self.watermark = i64::MAX;
        while let Some(next) = self.due.pop_first() {
            // As in `fire`: emitted before a restart.
            if self.resumed.is_some_and(|r| next.0 <= r) {
                let pane = self.panes.get_mut(&(next.1, next.2)).unwrap();
                pane.fired = true;
                self.replayed += std::mem::take(&mut pane.rows);
                pane.acks.clear();
                continue;
            }
            return Some(next);
        }
        None
    }

    /// The result of one pane from [`Windows::next_due_at_end`].
    pub fn finish_pane(&mut self, due: Due) -> Result<Batch, PluginError> {
        let results = self.acc.finish(&self.plugin_pane(&due))?;
        let pane = self.panes.get_mut(&(due.1, due.2)).unwrap();
        pane.fired = true;
        let acks = std::mem::take(&mut pane.acks);
        let mut batch = self.results(&[due], results)?;
        batch.acks = acks;
        Ok(batch)
    }

    /// Passes over a pane from [`Windows::next_due_at_end`] without its result.
    pub fn skip_pane(&mut self, due: Due) {
        let pane = self.panes.get_mut(&(due.1, due.2)).unwrap();
        pane.fired = true;
        pane.acks.clear();
    }

    /// A pane as a dead-letter line names it: its window and key.
    pub fn describe(&self, (end, start, key): Due) -> Json {
        let window = if global::is_global((start, end)) {
            Json::Null
        } else {
            json!([
                crate::record::format_rfc3339(start),
                crate::record::format_rfc3339(end)
            ])
        };
        json!({ "window": window, "key": self.keys.key(key).0.to_json() })
    }
}

/// What a window stage keeps to rebuild its state after its plugin fails.
#[derive(Default)]
pub struct Recovery {
    snapshot: Option<Snapshot>,
    /// The batches folded in since the snapshot, in order.
    since: Vec<Arc<Batch>>,
    rows: usize,
}

impl Recovery {
    /// Before a batch: a new snapshot when none is kept or enough rows came since the last.
    pub fn before<A: Accumulators>(&mut self, windows: &mut Windows<A>) -> Result<(), PluginError> {
        if self.snapshot.is_none() || self.rows >= MIN_ROWS.max(4 * windows.panes.len()) {
            self.snapshot = Some(windows.snapshot()?);
            self.since.clear();
            self.rows = 0;
        }
        Ok(())
    }

    /// A batch folded in.
    pub fn after(&mut self, batch: Arc<Batch>) {
        self.rows += batch.len;
        self.since.push(batch);
    }

    /// The state changed in another way (a checkpoint restored): take a snapshot before the next batch.
    pub fn reset(&mut self) {
        *self = Recovery::default();
    }

    /// After a failure: the plugin restarted, the snapshot's state loaded, and the batches since folded
    /// in again with their results and set-aside rows discarded (they went out the first time).
    pub fn rebuild<A: Accumulators>(&self, windows: &mut Windows<A>) -> Result<(), PluginError> {
        let snapshot = self
            .snapshot
            .as_ref()
            .expect("a snapshot is taken before the first batch");
        windows.rebuild(snapshot)?;
        for batch in &self.since {
            windows.process(batch)?;
        }
        windows.take_replayed();
        Ok(())
    }
}
