//! Checkpoints: a consistent cut of a running pipeline — where each source was, and the state of every
//! window and sink there — written atomically every `interval`, and at a clean stop, so a restart
//! resumes from it exactly: no record read twice into a window, none lost, no re-read of what was done.
//!
//! The cut is taken with barriers, as Flink does (Chandy-Lamport, aligned): the coordinator asks each
//! source for checkpoint `n`; a source hands on a barrier `n` after its last batch before the cut and
//! reports its position (Kafka: the next offset of each partition). A stage that has received barrier `n`
//! from every input saves its state (a window: the plugin's `save` bytes per open window and key, the
//! watermark; a sink: what makes its output durable up to there, and its file length), then passes the
//! barrier on. Batches that arrive from an input after its barrier wait until the barrier has come from
//! the other inputs too, so the saved states hold exactly the records before the cut. When every stage
//! has reported, the checkpoint is written (see [`store`]) and the sources commit their positions to
//! Kafka, naming the checkpoint in the commit metadata.
//!
//! A restart reads the newest complete checkpoint: sources seek to its positions, windows load their
//! state, file sinks cut their file back to the length they had at the cut (what came after is
//! computed again, so it is written once). Checkpoints are taken when every source resumes
//! (`start = "committed"`): a run that starts over has no use for them.

pub mod store;

use crate::config::CheckpointConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};
pub use store::{Checkpoint, Store, StoreError};

/// How a stage starts, see [`Coordinator::start`].
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Load this state from the restored checkpoint.
    Restore(Value),
    /// Checkpoints are on and none was taken yet: record where the output stands.
    Fresh,
    /// Nothing to restore or record.
    Plain,
}

/// Takes checkpoints for one run: asks sources for barriers, collects every stage's part, writes the
/// checkpoint, and tells sources which positions they may commit.
pub struct Coordinator {
    /// `None`: checkpoints are off for this run.
    store: Option<Store>,
    interval: StdDuration,
    shutdown_timeout: StdDuration,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    sources: BTreeSet<String>,
    /// Every stage that is not a source; each reports its part of each checkpoint.
    stages: BTreeSet<String>,
    /// The checkpoint read at start, until every source has said whether it resumes from it.
    restored: Option<Checkpoint>,
    /// Sources that have not yet said whether they resume from `restored`.
    undecided: BTreeSet<String>,
    /// Why checkpoints stopped for this run, once they have.
    off: Option<String>,
    /// The newest checkpoint asked for, and when.
    requested: u64,
    last_request: Option<Instant>,
    /// The checkpoint a stop asked for.
    final_id: Option<u64>,
    /// Per source, the newest barrier it handed on.
    injected: BTreeMap<String, u64>,
    /// Sources that reached the end of their input, with their last position.
    ended_sources: BTreeMap<String, Value>,
    /// Stages that ended after all their input (they hold no state any more).
    ended_stages: BTreeSet<String>,
    rounds: BTreeMap<u64, Round>,
    /// The newest checkpoint written, with its sources' positions.
    completed: Option<(u64, BTreeMap<String, Value>)>,
}

/// The parts of one checkpoint collected so far.
#[derive(Default)]
struct Round {
    parts: BTreeMap<String, Value>,
    sources: BTreeSet<String>,
    stages: BTreeSet<String>,
}

impl Coordinator {
    /// Checkpoints off: barriers are never asked for.
    pub fn off() -> Self {
        Coordinator {
            store: None,
            interval: StdDuration::MAX,
            shutdown_timeout: StdDuration::from_secs(10),
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    /// Checkpoints into `store` for a run of these sources and stages, resuming from `restored`.
    pub fn new(
        config: &CheckpointConfig,
        store: Store,
        sources: BTreeSet<String>,
        stages: BTreeSet<String>,
        restored: Option<Checkpoint>,
    ) -> Self {
        let requested = restored.as_ref().map_or(0, |c| c.id);
        Coordinator {
            store: Some(store),
            interval: StdDuration::from_millis(config.interval.millis().max(1) as u64),
            shutdown_timeout: StdDuration::from_millis(config.shutdown_timeout.millis() as u64),
            state: Mutex::new(State {
                undecided: sources.clone(),
                sources,
                stages,
                restored,
                requested,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// The coordinator for a run of `pipeline`: checkpoints on when every source resumes where an
    /// earlier run stopped, starting from the newest complete checkpoint in the directory.
    pub fn for_pipeline(pipeline: &crate::config::Pipeline) -> Result<Self, StoreError> {
        use crate::topology::registry::Role;
        let (sources, stages): (Vec<_>, Vec<_>) =
            pipeline.stages.iter().partition(|s| s.role == Role::Source);
        if sources.is_empty() || !sources.iter().all(|s| s.config.checkpoints()) {
            return Ok(Coordinator::off());
        }
        let store = Store::new(pipeline.resolve(&pipeline.checkpoint.dir));
        let (restored, warnings) = store.latest()?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        if let Some(cp) = &restored {
            eprintln!(
                "tributary: resuming from checkpoint {} in `{}`",
                cp.id,
                store.dir().display()
            );
        }
        Ok(Coordinator::new(
            &pipeline.checkpoint,
            store,
            sources.iter().map(|s| s.name.clone()).collect(),
            stages.iter().map(|s| s.name.clone()).collect(),
            restored,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this run takes checkpoints.
    pub fn enabled(&self) -> bool {
        self.store.is_some() && self.lock().off.is_none()
    }

    pub fn shutdown_timeout(&self) -> StdDuration {
        self.shutdown_timeout
    }

    /// The id of the checkpoint this run started from, if any.
    pub fn restored_id(&self) -> Option<u64> {
        self.lock().restored.as_ref().map(|c| c.id)
    }

    /// A source's position in the checkpoint this run starts from.
    pub fn restored_position(&self, source: &str) -> Option<Value> {
        let s = self.lock();
        s.restored.as_ref()?.stages.get(source).cloned()
    }

    /// A source says whether it resumes from the restored checkpoint. One that cannot (a Kafka source
    /// that fell back to replaying a capture) turns checkpoints off for the run, and no stage restores
    /// state: the run computes everything from its input.
    pub fn begin(&self, source: &str, resumes: Result<(), String>) {
        let mut s = self.lock();
        if !s.undecided.remove(source) {
            return; // decided already
        }
        if let Err(why) = resumes {
            if self.store.is_some() && s.off.is_none() {
                eprintln!("tributary: checkpoints are off for this run: {why}");
            }
            s.off.get_or_insert(why);
            s.restored = None;
        }
        drop(s);
        self.changed.notify_all();
    }

    /// A source that stopped or failed before it said whether it resumes: nothing is restored and
    /// no checkpoint is taken (quietly: the stop or the failure says what happened).
    pub fn abandon(&self, source: &str) {
        let mut s = self.lock();
        if s.undecided.remove(source) {
            s.off
                .get_or_insert_with(|| format!("stage `{source}` read nothing"));
            s.restored = None;
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The state a stage restores: waits until every source has said whether it resumes (a stage
    /// calls this at its first input, so a source has decided by then, unless there are several).
    pub fn restored_state(&self, stage: &str) -> Option<Value> {
        match self.start(stage) {
            Start::Restore(state) => Some(state),
            Start::Fresh | Start::Plain => None,
        }
    }

    /// How a stage starts: from its state in the restored checkpoint, fresh (checkpoints are on but
    /// none was taken yet), or without checkpoints. Waits like [`Coordinator::restored_state`].
    pub fn start(&self, stage: &str) -> Start {
        let mut s = self.lock();
        while !s.undecided.is_empty() {
            s = self
                .changed
                .wait_timeout(s, StdDuration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match &s.restored {
            _ if self.store.is_none() || s.off.is_some() => Start::Plain,
            Some(cp) => cp
                .stages
                .get(stage)
                .cloned()
                .map_or(Start::Plain, Start::Restore),
            None => Start::Fresh,
        }
    }

    /// For a stage that starts fresh: records `part` (where its output stands before it writes
    /// anything) for a restart that finds no checkpoint either, or returns the part an earlier
    /// attempt recorded, to restore (see [`Store::write_initial`]).
    pub fn initial(&self, stage: &str, part: Value) -> Result<Option<Value>, StoreError> {
        match &self.store {
            Some(store) => store.write_initial(stage, part),
            None => Ok(None),
        }
    }

    /// The next barrier a source is to hand on, if one is due: checkpoints are asked for every
    /// `interval`, one at a time (a new one only once the last is written), and at a stop.
    pub fn due(&self, source: &str) -> Option<u64> {
        self.store.as_ref()?;
        let mut s = self.lock();
        if s.off.is_some() {
            return None;
        }
        let idle = s.rounds.is_empty();
        if idle
            && s.final_id.is_none()
            && s.last_request.is_none_or(|t| t.elapsed() >= self.interval)
        {
            // The first interval counts from the first question, not from the start of the process.
            if s.last_request.is_none() {
                s.last_request = Some(Instant::now());
                return None;
            }
            s.requested += 1;
            s.last_request = Some(Instant::now());
            let id = s.requested;
            s.rounds.insert(id, Round::default());
        }
        let done = s.injected.get(source).copied().unwrap_or(0);
        s.rounds.range(done + 1..).next().map(|(id, _)| *id)
    }

    /// A stop asks for one last checkpoint; returns its id (the same for every source), or `None`
    /// when checkpoints are off.
    pub fn request_final(&self) -> Option<u64> {
        self.store.as_ref()?;
        let mut s = self.lock();
        if s.off.is_some() {
            return None;
        }
        if let Some(id) = s.final_id {
            return Some(id);
        }
        s.requested += 1;
        let id = s.requested;
        s.final_id = Some(id);
        s.rounds.insert(id, Round::default());
        Some(id)
    }

    /// A source handed on barrier `id` at `position`.
    pub fn injected(&self, source: &str, id: u64, position: Value) {
        let mut s = self.lock();
        s.injected.insert(source.to_string(), id);
        if let Some(round) = s.rounds.get_mut(&id) {
            round.sources.insert(source.to_string());
            round.parts.insert(source.to_string(), position);
        }
        self.try_complete(s);
    }

    /// A stage received barrier `id` from every input and saved its part (`None`: it has no state).
    pub fn saved(&self, stage: &str, id: u64, part: Option<Value>) {
        let mut s = self.lock();
        if let Some(round) = s.rounds.get_mut(&id) {
            round.stages.insert(stage.to_string());
            if let Some(p) = part {
                round.parts.insert(stage.to_string(), p);
            }
        }
        self.try_complete(s);
    }

    /// A source read its input to the end; `position` is where it ended.
    pub fn source_ended(&self, source: &str, position: Value) {
        let mut s = self.lock();
        s.ended_sources.insert(source.to_string(), position);
        self.try_complete(s);
    }

    /// A stage ended after all its input (or a stop's last barrier): it holds no state any more.
    pub fn stage_ended(&self, stage: &str) {
        let mut s = self.lock();
        s.ended_stages.insert(stage.to_string());
        self.try_complete(s);
    }

    /// A stage or source failed: no checkpoint is written from now on, since one might lack its state.
    pub fn fail(&self, why: &str) {
        let mut s = self.lock();
        s.off.get_or_insert_with(|| why.to_string());
        s.rounds.clear();
        drop(s);
        self.changed.notify_all();
    }

    /// Writes every round that has all its parts; at the end of the whole input, a last checkpoint
    /// with the sources' end positions and no state.
    fn try_complete(&self, mut s: MutexGuard<'_, State>) {
        let Some(store) = &self.store else { return };
        loop {
            if s.off.is_some() {
                break;
            }
            let Some((&id, round)) = s.rounds.iter().next() else {
                break;
            };
            let sources_in = s
                .sources
                .iter()
                .all(|src| round.sources.contains(src) || s.ended_sources.contains_key(src));
            let stages_in = s
                .stages
                .iter()
                .all(|st| round.stages.contains(st) || s.ended_stages.contains(st));
            if !(sources_in && stages_in) {
                break;
            }
            let mut round = s.rounds.remove(&id).expect("first round");
            for (src, pos) in &s.ended_sources {
                round
                    .parts
                    .entry(src.clone())
                    .or_insert_with(|| pos.clone());
            }
            self.write(&mut s, store, id, round.parts);
        }
        let all_ended = s
            .sources
            .iter()
            .all(|src| s.ended_sources.contains_key(src))
            && s.stages.iter().all(|st| s.ended_stages.contains(st));
        if all_ended && s.off.is_none() && s.final_id.is_none() && s.rounds.is_empty() {
            // The end of the input: everything is emitted and written; a restart starts after it.
            s.requested += 1;
            let id = s.requested;
            s.final_id = Some(id);
            let parts = s.ended_sources.clone().into_iter().collect();
            self.write(&mut s, store, id, parts);
        }
        drop(s);
        self.changed.notify_all();
    }

    fn write(&self, s: &mut State, store: &Store, id: u64, parts: BTreeMap<String, Value>) {
        let cp = Checkpoint {
            id,
            taken_at: store::now_millis(),
            stages: parts,
        };
        match store.write(&cp) {
            Ok(()) => {
                let positions = s
                    .sources
                    .iter()
                    .filter_map(|src| cp.stages.get(src).map(|p| (src.clone(), p.clone())))
                    .collect();
                s.completed = Some((id, positions));
            }
            Err(e) => {
                eprintln!("warning: checkpoint {id} was not written ({e}); the previous one stands, and a restart reads again what came after it");
            }
        }
    }

    /// The newest checkpoint this run wrote.
    pub fn last_completed(&self) -> Option<u64> {
        self.lock().completed.as_ref().map(|c| c.0)
    }

    /// The newest written checkpoint after `after`, with `source`'s position in it: what to commit.
    pub fn completed_after(&self, source: &str, after: u64) -> Option<(u64, Value)> {
        let s = self.lock();
        let (id, positions) = s.completed.as_ref()?;
        (*id > after).then(|| (*id, positions.get(source).cloned().unwrap_or(Value::Null)))
    }

    /// Waits until checkpoint `id` is written (`true`), checkpoints stop, or `timeout` passes.
    pub fn wait(&self, id: u64, timeout: StdDuration) -> bool {
        let until = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.completed.as_ref().is_some_and(|c| c.0 >= id) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if s.off.is_some() || left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left.min(StdDuration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the whole run's last checkpoint is written (`Some(id)`), or checkpoints stop.
    pub fn wait_final(&self, stop: &crate::topology::StopFlag) -> Option<u64> {
        let mut s = self.lock();
        loop {
            if let (Some(f), Some((c, _))) = (s.final_id, &s.completed) {
                if *c >= f {
                    return Some(*c);
                }
            }
            if s.off.is_some() || (stop.is_stopped() && s.final_id.is_none()) {
                return None;
            }
            s = self
                .changed
                .wait_timeout(s, StdDuration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;
    use serde_json::json;

    fn coordinator(name: &str, restored: Option<Checkpoint>) -> (Coordinator, Store) {
        let dir =
            std::env::temp_dir().join(format!("tributary-coord-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(dir);
        let config = CheckpointConfig {
            interval: Duration(1),
            ..CheckpointConfig::default()
        };
        let c = Coordinator::new(
            &config,
            store.clone(),
            BTreeSet::from(["src".to_string()]),
            BTreeSet::from(["win".to_string(), "sink".to_string()]),
            restored,
        );
        (c, store)
    }

    fn due(c: &Coordinator) -> Option<u64> {
        // The first question starts the clock; the interval is 1 ms.
        for _ in 0..100 {
            if let Some(id) = c.due("src") {
                return Some(id);
            }
            std::thread::sleep(StdDuration::from_millis(2));
        }
        None
    }

    #[test]
    fn a_checkpoint_is_written_once_every_stage_has_saved_its_part() {
        let (c, store) = coordinator("round", None);
        c.begin("src", Ok(()));
        assert_eq!(c.start("sink"), Start::Fresh, "no checkpoint yet");
        let id = due(&c).expect("a checkpoint is due");
        assert_eq!(id, 1);
        assert_eq!(c.due("src"), Some(1), "due until the source hands it on");
        c.injected("src", id, json!({ "p0": 10 }));
        assert_eq!(c.due("src"), None, "one at a time");
        c.saved("win", id, Some(json!({ "panes": 3 })));
        assert_eq!(
            c.completed_after("src", 0),
            None,
            "the sink has not saved yet"
        );
        c.saved("sink", id, None);
        assert_eq!(c.completed_after("src", 0), Some((1, json!({ "p0": 10 }))));
        let (cp, _) = store.latest().unwrap();
        let cp = cp.unwrap();
        assert_eq!(cp.id, 1);
        assert_eq!(
            cp.stages,
            BTreeMap::from([
                ("src".to_string(), json!({ "p0": 10 })),
                ("win".to_string(), json!({ "panes": 3 })),
            ])
        );
        assert!(c.wait(1, StdDuration::ZERO));
        let _ = std::fs::remove_dir_all(store.dir());
    }

    #[test]
    fn a_stop_asks_once_and_the_end_of_input_writes_a_stateless_checkpoint() {
        let restored = Checkpoint {
            id: 7,
            taken_at: 0,
            stages: BTreeMap::from([("win".to_string(), json!("state"))]),
        };
        let (c, store) = coordinator("final", Some(restored));
        c.begin("src", Ok(()));
        assert_eq!(c.restored_state("win"), Some(json!("state")));
        assert_eq!(
            c.start("sink"),
            Start::Plain,
            "no part of its own to restore"
        );
        assert_eq!(
            c.request_final(),
            Some(8),
            "ids go on from the restored one"
        );
        assert_eq!(c.request_final(), Some(8));
        assert_eq!(c.due("src"), Some(8));
        c.injected("src", 8, json!(1));
        c.saved("win", 8, Some(json!("w")));
        // The sink ended after its last input instead of saving: it holds nothing.
        c.stage_ended("sink");
        assert!(c.wait(8, StdDuration::ZERO));

        let (c, store2) = coordinator("end", None);
        c.begin("src", Ok(()));
        c.source_ended("src", json!("end"));
        c.stage_ended("win");
        c.stage_ended("sink");
        assert_eq!(c.wait_final(&Default::default()), Some(1));
        let cp = store2.latest().unwrap().0.unwrap();
        assert_eq!(
            cp.stages,
            BTreeMap::from([("src".to_string(), json!("end"))])
        );
        let _ = std::fs::remove_dir_all(store.dir());
        let _ = std::fs::remove_dir_all(store2.dir());
    }

    #[test]
    fn a_source_that_cannot_resume_turns_checkpoints_off_and_restores_nothing() {
        let restored = Checkpoint {
            id: 3,
            taken_at: 0,
            stages: BTreeMap::from([("win".to_string(), json!("state"))]),
        };
        let (c, store) = coordinator("off", Some(restored));
        c.begin("src", Err("fell back to a capture".into()));
        assert!(!c.enabled());
        assert_eq!(c.restored_state("win"), None);
        assert_eq!(c.start("sink"), Start::Plain, "nothing to record either");
        assert_eq!(c.due("src"), None);
        assert_eq!(c.request_final(), None);
        let _ = std::fs::remove_dir_all(store.dir());
    }

    #[test]
    fn a_failed_stage_stops_checkpoints() {
        let (c, store) = coordinator("fail", None);
        c.begin("src", Ok(()));
        let id = due(&c).unwrap();
        c.injected("src", id, json!(1));
        c.fail("stage `win` failed");
        c.stage_ended("win");
        c.stage_ended("sink");
        assert!(!c.wait(id, StdDuration::ZERO));
        assert_eq!(store.latest().unwrap().0, None);
        let _ = std::fs::remove_dir_all(store.dir());
    }
}
