//! The run's progress board: how far each window stage's results have been written, so a source that
//! commits its read position (Kafka) can store it alongside, and a restart can tell records of windows
//! already emitted from records of windows still to compute.
//!
//! Why a window's watermark is reported only once its results are *written*: a restart drops re-read
//! records of windows that end at or before the restored watermark, so that watermark must never cover a
//! window whose rows did not reach the sinks, or those rows would be lost. A result batch carries a
//! [`Progress::written`] token among its acks; sinks drop acks after writing, and the token then raises
//! the stage's watermark. It sits before the batch's source acks, so the watermark is on the board before
//! the source can see those batches as done and commit their offsets (the source takes the commit points
//! first and the snapshot second): a committed batch never holds a record of a window the committed
//! watermark does not cover.

use super::StopFlag;
use crate::record::Ack;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Watermarks per window stage, shared by every stage of one run.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<State>,
    stop: StopFlag,
}

#[derive(Debug, Default)]
struct State {
    /// The watermark of the latest written results, per stage.
    written: BTreeMap<String, i64>,
    /// What a source restored from its last commit, per stage.
    restored: BTreeMap<String, i64>,
    /// Stages that keep no watermark here (see [`Progress::exclude`]).
    excluded: BTreeSet<String>,
}

impl Progress {
    pub fn new(stop: StopFlag) -> Arc<Self> {
        Arc::new(Progress {
            state: Mutex::default(),
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every window of `stage` ending at or before `watermark` has been emitted and written. Never lowers.
    pub fn report(&self, stage: &str, watermark: i64) {
        let mut s = self.lock();
        if s.excluded.contains(stage) {
            return;
        }
        let w = s.written.entry(stage.to_string()).or_insert(watermark);
        *w = (*w).max(watermark);
    }

    /// Watermarks a source read back from its last commit; called before its first batch, so a window
    /// stage sees them at its first batch. A second source restoring the same stage lowers it: the lower
    /// value is the safe one (fewer records are taken for already emitted).
    pub fn restore(&self, watermarks: BTreeMap<String, i64>) {
        let mut s = self.lock();
        for (stage, wm) in watermarks {
            if s.excluded.contains(&stage) {
                continue;
            }
            let w = s.restored.entry(stage).or_insert(wm);
            *w = (*w).min(wm);
        }
    }

    /// `stage` keeps no watermark here: neither committed nor restored. For a window stage fed by a
    /// group's exchange (`exchange::receive`): it runs a window per exchange partition, each with its own
    /// watermark, so one stage-wide value would let a restart take the laggards' windows for emitted;
    /// and it recovers by its own snapshots, which count each record once. Forgets what was restored
    /// for it already (earlier versions committed one).
    pub fn exclude(&self, stage: &str) {
        let mut s = self.lock();
        s.written.remove(stage);
        s.restored.remove(stage);
        s.excluded.insert(stage.to_string());
    }

    /// The watermark restored for `stage`, if a source restored one.
    pub fn restored(&self, stage: &str) -> Option<i64> {
        self.lock().restored.get(stage).copied()
    }

    /// What to commit: per stage, the restored or the written watermark, whichever is higher (a run that
    /// has not yet written anything for a stage keeps what it restored).
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        let s = self.lock();
        let mut out = s.restored.clone();
        for (stage, &wm) in &s.written {
            let w = out.entry(stage.clone()).or_insert(wm);
            *w = (*w).max(wm);
        }
        out
    }

    /// A token for a result batch of `stage` emitted at `watermark`: when the last sink lets go of it,
    /// the watermark is reported. Dropped during a stop or a panic it reports nothing, since then it may
    /// come from a stage discarding the batch instead of a sink having written it (as `BatchDone`).
    pub fn written(self: &Arc<Self>, stage: &str, watermark: i64) -> Ack {
        Ack::new(Written {
            progress: self.clone(),
            stage: stage.to_string(),
            watermark,
        })
    }
}

struct Written {
    progress: Arc<Progress>,
    stage: String,
    watermark: i64,
}

impl Drop for Written {
    fn drop(&mut self) {
        if !self.progress.stop.is_stopped() && !std::thread::panicking() {
            self.progress.report(&self.stage, self.watermark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keeps_the_higher_of_restored_and_written() {
        let stop = StopFlag::default();
        let p = Progress::new(stop.clone());
        p.restore(BTreeMap::from([("a".into(), 100), ("b".into(), 50)]));
        p.restore(BTreeMap::from([("a".into(), 90)]));
        assert_eq!(p.restored("a"), Some(90), "two restores: the lower is safe");
        p.report("b", 40);
        p.report("c", 7);
        assert_eq!(
            p.snapshot(),
            BTreeMap::from([("a".into(), 90), ("b".into(), 50), ("c".into(), 7)])
        );
        let token = p.written("b", 60);
        assert_eq!(p.snapshot()["b"], 50, "not written yet");
        drop(token);
        assert_eq!(p.snapshot()["b"], 60);
        let token = p.written("b", 70);
        stop.stop();
        drop(token);
        assert_eq!(p.snapshot()["b"], 60, "dropped by a stop: not written");
    }

    #[test]
    fn an_excluded_stage_is_neither_committed_nor_restored() {
        let p = Progress::new(StopFlag::default());
        p.restore(BTreeMap::from([("w".into(), 100), ("v".into(), 5)]));
        p.exclude("w");
        assert_eq!(p.restored("w"), None, "restored before the exclusion");
        p.restore(BTreeMap::from([("w".into(), 100)]));
        assert_eq!(p.restored("w"), None, "restored after it");
        p.report("w", 200);
        drop(p.written("w", 300));
        assert_eq!(p.snapshot(), BTreeMap::from([("v".into(), 5)]));
    }
}
