//! `tributary run --watch`: swaps the plugins of a running pipeline when `pipeline.toml` or a plugin
//! file changes, without restarting the sources or losing a record.
//!
//! A watcher thread polls the pipeline file and the `.wasm` files its plugin stages load. When they
//! change (in content, and have stood still for a poll, so a half-copied file is not taken), it checks
//! the new pipeline as `tributary validate` does, works out which stages changed, builds the new
//! operators of those stages and leaves each in its stage's [`Slot`]. The stage thread picks it up
//! between two batches (see `run_node`), hands the old operator's state to the new one, and goes on:
//! checkpoint barriers stay aligned, since a swap happens between the messages they order.
//!
//! Only what a plugin stage's plugin does can change live (see [`SWAPPABLE`]). Anything else (sources,
//! sinks, the set of stages, `inputs`, a window's shape, the top-level tables) would need the graph or
//! the sources rebuilt, so such a change is reported and nothing of it is applied.

use super::{BuildContext, BuildError, Built, Operator, Output, StageError};
use crate::config::{Diagnostic, Diagnostics, Pipeline};
use crate::plugin::PluginHost;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Stage types whose plugin can be swapped while the pipeline runs.
const PLUGIN_TYPES: &[&str] = &["transform", "window"];

/// The fields of a plugin stage that only concern its plugin, and so can change live. The others
/// (`inputs`, a window's `window`, `key`, `event_time`, lateness) shape the graph or the panes the
/// saved state is made of.
const SWAPPABLE: &[&str] = &[
    "plugin",
    "config",
    "timeout",
    "memory_limit",
    "on_error",
    "max_rows_per_record",
];

/// How often the files are looked at. A change is taken once it has stood still for one poll, so it
/// is applied 0.4 to 0.8 s after it is made.
const POLL: Duration = Duration::from_millis(400);

/// What an operator hands to the next version of itself (see [`Operator::handover`]).
pub struct Handover {
    /// Its state, as [`Operator::checkpoint`] saves it; `None`: it keeps none.
    pub state: Option<serde_json::Value>,
    /// What is left of the state when the new version cannot load it (a window's watermark, without its
    /// open windows); `None`: nothing.
    pub reset: Option<serde_json::Value>,
    /// What the operator holds besides its state and must not lose in the swap (a window's source
    /// tokens, which keep its buffered records uncommitted); only the same type of operator reads it.
    pub held: Option<Box<dyn std::any::Any + Send>>,
}

impl Handover {
    pub fn new(state: Option<serde_json::Value>) -> Self {
        Handover {
            state,
            reset: None,
            held: None,
        }
    }
}

/// A new operator for a running stage, built by the watcher.
pub struct Swap {
    pub operator: Box<dyn Operator>,
    /// A second instance, untouched, to start from when `operator` cannot load the old state (a
    /// failed load may have loaded part of it).
    pub fresh: Box<dyn Operator>,
    /// What changed, for the line that says the swap was made, like "plugin `sum.wasm` (new file)".
    pub what: String,
}

/// Where the watcher leaves a stage's next operator; the stage thread takes it between batches. A
/// newer swap replaces one not yet taken.
#[derive(Default)]
pub struct Slot(Mutex<Option<Swap>>);

impl Slot {
    pub fn put(&self, swap: Swap) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(swap);
    }

    pub fn take(&self) -> Option<Swap> {
        // `try_lock`: the stage never waits on the watcher, which holds the lock only to store.
        match self.0.try_lock() {
            Ok(mut s) => s.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// One slot per stage of a pipeline, in its order.
pub fn slots(pipeline: &Pipeline) -> Vec<Arc<Slot>> {
    pipeline.stages.iter().map(|_| Arc::default()).collect()
}

/// Replaces a stage's operator: the old one hands over its state, the new one loads it; when it cannot
/// (its plugin's `load` refuses the saved accumulators), the fresh instance starts with what is left
/// of it and the run says so. Prints one line either way.
pub fn swap(
    mut old: Box<dyn Operator>,
    swap: Swap,
    out: &mut Output,
) -> Result<Box<dyn Operator>, StageError> {
    let mut handover = old.handover(out)?;
    let had_state = handover.state.is_some();
    let Swap {
        mut operator,
        mut fresh,
        what,
    } = swap;
    let stage = out.stage().to_string();
    match operator.take_over(&mut handover, false) {
        Ok(()) if had_state => {
            eprintln!("tributary: stage `{stage}`: swapped in {what}; state kept");
            Ok(operator)
        }
        Ok(()) => {
            eprintln!("tributary: stage `{stage}`: swapped in {what}");
            Ok(operator)
        }
        Err(e) => {
            drop(operator);
            fresh.take_over(&mut handover, true).map_err(|r| {
                StageError::msg(format!(
                    "cannot start the new plugin after it refused the old state ({e}): {r}"
                ))
            })?;
            // The first cause says what the plugin refused; those below it repeat it.
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            eprintln!(
                "tributary: stage `{stage}`: swapped in {what}; state reset ({e}{cause}): the windows open at the swap start again empty"
            );
            Ok(fresh)
        }
    }
}

/// What a change to the pipeline amounts to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Stages whose plugin is to be swapped, with what changed.
    pub swap: Vec<(String, String)>,
    /// Changes that cannot be applied while the pipeline runs.
    pub restart: Vec<String>,
}

/// Compares two versions of a pipeline file, stage by stage, on their TOML values (spans and layout
/// do not count). `file_changed` tells whether the `.wasm` file a plugin value names has new content.
pub fn diff(old: &toml::Table, new: &toml::Table, file_changed: &dyn Fn(&str) -> bool) -> Diff {
    let mut d = Diff::default();
    let tops = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    for key in tops.filter(|k| *k != "stages") {
        if old.get(key) != new.get(key) {
            d.restart.push(format!("`[{key}]` changed"));
        }
    }
    let empty = toml::Table::new();
    let stages = |t: &'_ toml::Table| -> toml::Table {
        t.get("stages")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (old, new) = (stages(old), stages(new));
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        d.restart.push(format!("stage `{name}` was removed"));
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        d.restart.push(format!("stage `{name}` was added"));
    }
    for (name, n) in &new {
        let Some(o) = old.get(name) else { continue };
        let (Some(o), Some(n)) = (o.as_table(), n.as_table()) else {
            if o != n {
                d.restart.push(format!("stage `{name}` changed"));
            }
            continue;
        };
        let type_of = |t: &toml::Table| {
            t.get("type")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        if type_of(o) != type_of(n) {
            d.restart.push(format!("stage `{name}`: `type` changed"));
            continue;
        }
        let plugin_stage = type_of(n).is_some_and(|t| PLUGIN_TYPES.contains(&t.as_str()));
        let keys = o.keys().chain(n.keys().filter(|k| !o.contains_key(*k)));
        let (live, fixed): (Vec<&String>, Vec<&String>) = keys
            .filter(|k| o.get(*k) != n.get(*k))
            .partition(|k| plugin_stage && SWAPPABLE.contains(&k.as_str()));
        if !fixed.is_empty() {
            let fields: Vec<String> = fixed.iter().map(|k| format!("`{k}`")).collect();
            d.restart
                .push(format!("stage `{name}`: {} changed", fields.join(", ")));
            continue;
        }
        let plugin = n.get("plugin").and_then(toml::Value::as_str);
        let new_file = plugin
            .is_some_and(|p| is_path(p) && !live.iter().any(|k| *k == "plugin") && file_changed(p));
        if live.is_empty() && !new_file {
            continue;
        }
        let mut changed: Vec<String> = Vec::new();
        if new_file {
            changed.push("new file".into());
        }
        changed.extend(
            live.iter()
                .filter(|k| **k != "plugin")
                .map(|k| format!("`{k}` changed")),
        );
        let plugin = plugin.unwrap_or("?");
        let what = if changed.is_empty() {
            format!("plugin `{plugin}`")
        } else {
            format!("plugin `{plugin}` ({})", changed.join(", "))
        };
        d.swap.push((name.clone(), what));
    }
    d
}

/// Whether a plugin value names a file rather than a bundled plugin (as [`PluginHost::load`] decides).
fn is_path(plugin: &str) -> bool {
    plugin.ends_with(".wasm") || plugin.contains('/') || plugin.contains('\\')
}

/// The `.wasm` files the plugin stages of a pipeline file name, resolved against `base_dir`.
fn plugin_files(table: &toml::Table, base_dir: &Path) -> Vec<PathBuf> {
    let Some(stages) = table.get("stages").and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = stages
        .values()
        .filter_map(|s| s.get("plugin")?.as_str())
        .filter(|p| is_path(p))
        .map(|p| base_dir.join(p))
        .collect();
    files.sort();
    files.dedup();
    files
}

/// A file's content hash; `None` when it cannot be read.
fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// What a poll sees of a file without reading it.
type Seen = Option<(SystemTime, u64)>;

fn stat(path: &Path) -> Seen {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches a running pipeline's files until `done`, swapping plugins as they change (see the module
/// documentation). Everything it has to say goes to standard error, one line per event.
pub fn watch(
    pipeline: &Pipeline,
    host: &PluginHost,
    slots: &[Arc<Slot>],
    done: &AtomicBool,
) -> Result<(), String> {
    let mut w = Watcher::new(pipeline, host, slots)?;
    let files = w.running_files.len();
    eprintln!(
        "tributary: watching {} and {files} plugin file{} for changes",
        w.file.display(),
        if files == 1 { "" } else { "s" }
    );
    let mut looks = Settle::new(w.stat());
    let mut considered = w.hashes();
    let sleep = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while !done.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    loop {
        sleep(POLL);
        if done.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !looks.look(w.stat()) {
            continue;
        }
        let hashes = w.hashes();
        if hashes == considered {
            // Touched, not changed.
            continue;
        }
        considered = hashes;
        w.reload();
        // Files the new version names are watched from now on, from what they hold now. What the
        // others hold is not read again here: a change made while the reload ran is seen at the next
        // polls, since it differs from the looks and contents taken before it.
        let watched = w.watched();
        considered.retain(|path, _| watched.contains(path));
        for path in watched {
            considered
                .entry(path.clone())
                .or_insert_with(|| content_hash(&path));
        }
    }
}

/// Decides when watched files are to be read: once a look finds them as the look before did (a file
/// still being written changes between looks), and not as they were when last read.
struct Settle<S> {
    seen: S,
    settled: S,
}

impl<S: PartialEq + Clone> Settle<S> {
    fn new(now: S) -> Self {
        Settle {
            seen: now.clone(),
            settled: now,
        }
    }

    fn look(&mut self, now: S) -> bool {
        if now != self.seen {
            self.seen = now;
            return false;
        }
        if now == self.settled {
            return false;
        }
        self.settled = now;
        true
    }
}

struct Watcher<'a> {
    file: PathBuf,
    base_dir: PathBuf,
    host: &'a PluginHost,
    slots: &'a [Arc<Slot>],
    /// Stage name → its index in the running pipeline, which is the index of its slot.
    index: HashMap<String, usize>,
    /// The running version of the pipeline file, as TOML values.
    running: toml::Table,
    /// The content hashes of the plugin files the running stages loaded.
    running_files: BTreeMap<PathBuf, Option<u64>>,
    /// Plugin files named by the latest version of the pipeline file, valid or not, so that a fix
    /// made to one of them is seen.
    named: Vec<PathBuf>,
}

impl<'a> Watcher<'a> {
    fn new(
        pipeline: &Pipeline,
        host: &'a PluginHost,
        slots: &'a [Arc<Slot>],
    ) -> Result<Self, String> {
        let running: toml::Table = pipeline
            .text
            .parse()
            .map_err(|e| format!("cannot read {} again: {e}", pipeline.file.display()))?;
        let running_files = plugin_files(&running, &pipeline.base_dir)
            .into_iter()
            .map(|p| {
                let h = content_hash(&p);
                (p, h)
            })
            .collect();
        Ok(Watcher {
            file: pipeline.file.clone(),
            base_dir: pipeline.base_dir.clone(),
            host,
            slots,
            index: (pipeline.stages.iter().enumerate())
                .map(|(i, s)| (s.name.clone(), i))
                .collect(),
            running,
            running_files,
            named: Vec::new(),
        })
    }

    fn watched(&self) -> Vec<PathBuf> {
        let mut files = vec![self.file.clone()];
        files.extend(self.running_files.keys().cloned());
        files.extend(self.named.iter().cloned());
        files.sort();
        files.dedup();
        files
    }

    fn stat(&self) -> BTreeMap<PathBuf, Seen> {
        self.watched()
            .into_iter()
            .map(|p| {
                let s = stat(&p);
                (p, s)
            })
            .collect()
    }

    fn hashes(&self) -> BTreeMap<PathBuf, Option<u64>> {
        self.watched()
            .into_iter()
            .map(|p| {
                let h = content_hash(&p);
                (p, h)
            })
            .collect()
    }

    /// Reads the pipeline file again and applies what changed, or says why it cannot.
    fn reload(&mut self) {
        let file = self.file.display().to_string();
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tributary: cannot read {file} ({e}); the run goes on unchanged");
                return;
            }
        };
        if let Ok(table) = text.parse::<toml::Table>() {
            self.named = plugin_files(&table, &self.base_dir);
        }
        let invalid = |problems: &Diagnostics| {
            eprintln!(
                "tributary: {file} changed, but the new version has problems; the run goes on unchanged:\n{problems}"
            );
        };
        let pipeline = match Pipeline::parse(&self.file, text.clone()) {
            Ok(p) => p,
            Err(problems) => return invalid(&problems),
        };
        let Ok(table) = text.parse::<toml::Table>() else {
            // `Pipeline::parse` accepted it, so it is TOML.
            return;
        };
        let diff = diff(&self.running, &table, &|plugin| {
            let path = self.base_dir.join(plugin);
            self.running_files
                .get(&path)
                .is_none_or(|h| *h != content_hash(&path))
        });
        if !diff.restart.is_empty() {
            eprintln!(
                "tributary: {file} changed, but applying it needs a restart ({}); the run goes on unchanged",
                diff.restart.join("; ")
            );
            return;
        }
        if diff.swap.is_empty() {
            eprintln!("tributary: {file} changed, nothing to swap");
            return;
        }
        let swaps = match self.build(&pipeline, &diff.swap) {
            Ok(s) => s,
            Err(problems) => return invalid(&problems),
        };
        for (name, swap) in swaps {
            self.slots[self.index[&name]].put(swap);
        }
        self.running = table;
        self.running_files = plugin_files(&self.running, &self.base_dir)
            .into_iter()
            .map(|p| {
                let h = content_hash(&p);
                (p, h)
            })
            .collect();
    }

    /// Builds the changed stages of `pipeline`, as `validate` builds them; every problem is reported.
    fn build(
        &self,
        pipeline: &Pipeline,
        changed: &[(String, String)],
    ) -> Result<Vec<(String, Swap)>, Diagnostics> {
        let console_order = Arc::new(crate::sinks::console::PrintOrder::for_pipeline(pipeline));
        let mut swaps = Vec::new();
        let mut problems: Vec<Diagnostic> = Vec::new();
        for (name, what) in changed {
            let Some(stage) = pipeline.stages.iter().find(|s| &s.name == name) else {
                continue;
            };
            let ctx = BuildContext {
                pipeline,
                stage: &stage.name,
                plugins: self.host,
                console_order: &console_order,
            };
            let build = || match stage.config.build(&ctx) {
                Ok(Built::Operator(op)) => Ok(op),
                Ok(_) => Err(BuildError::new(None, "is not an operator")),
                Err(e) => Err(e),
            };
            match build().and_then(|operator| Ok((operator, build()?))) {
                Ok((operator, fresh)) => swaps.push((
                    name.clone(),
                    Swap {
                        operator,
                        fresh,
                        what: what.clone(),
                    },
                )),
                Err(e) => problems.push(pipeline.diagnostic(
                    e.span.or(Some(stage.name_span.clone())),
                    format!("stage `{}`: {}", stage.name, e.message),
                )),
            }
        }
        if problems.is_empty() {
            Ok(swaps)
        } else {
            Err(Diagnostics(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[dead_letter]
path = "out/dead.jsonl"

[stages.events]
type = "replay"
path = "events.jsonl"
speed = 10

[stages.scaled]
type = "transform"
inputs = ["events"]
plugin = "scale"
config = { field = "streams", factor = 1e8 }

[stages.avg]
type = "window"
inputs = ["scaled"]
plugin = "plugins/avg.wasm"
config = { field = "streams" }
key = "genre"
window = { kind = "tumbling", size = "1m" }

[stages.out]
type = "file"
inputs = ["avg"]
path = "out/avg.jsonl"
"#;

    fn diff_of(new: &str, changed_file: Option<&str>) -> Diff {
        let old: toml::Table = BASE.parse().unwrap();
        let new: toml::Table = new.parse().unwrap();
        diff(&old, &new, &|p| Some(p) == changed_file)
    }

    #[test]
    fn layout_and_comments_change_nothing() {
        let moved = BASE
            .replace("\n[stages.out]", "# results\n\n\n[stages.out]")
            .replace(
                "config = { field = \"streams\" }",
                "config.field = \"streams\"",
            );
        assert_eq!(diff_of(&moved, None), Diff::default());
    }

    #[test]
    fn plugin_fields_swap() {
        let new = BASE
            .replace("plugin = \"plugins/avg.wasm\"", "plugin = \"sum\"")
            .replace("factor = 1e8", "factor = 1e9")
            .replace(
                "inputs = [\"events\"]",
                "inputs = [\"events\"]\ntimeout = \"10s\"",
            );
        let d = diff_of(&new, None);
        assert!(d.restart.is_empty(), "{d:?}");
        assert_eq!(
            d.swap,
            [
                (
                    "scaled".to_string(),
                    "plugin `scale` (`config` changed, `timeout` changed)".to_string()
                ),
                ("avg".to_string(), "plugin `sum`".to_string()),
            ]
        );
    }

    #[test]
    fn a_new_plugin_file_swaps_its_stages() {
        let d = diff_of(BASE, Some("plugins/avg.wasm"));
        assert_eq!(
            d.swap,
            [(
                "avg".to_string(),
                "plugin `plugins/avg.wasm` (new file)".to_string()
            )]
        );
        // A bundled name is no file.
        assert!(diff_of(BASE, Some("scale")).swap.is_empty());
        assert!(diff_of(BASE, Some("elsewhere.wasm")).swap.is_empty());
    }

    #[test]
    fn everything_else_needs_a_restart() {
        for (from, to, said) in [
            (
                "speed = 10",
                "speed = 20",
                "stage `events`: `speed` changed",
            ),
            (
                "size = \"1m\"",
                "size = \"5m\"",
                "stage `avg`: `window` changed",
            ),
            (
                "key = \"genre\"",
                "key = \"artist\"",
                "stage `avg`: `key` changed",
            ),
            (
                "inputs = [\"scaled\"]",
                "inputs = [\"events\"]",
                "stage `avg`: `inputs` changed",
            ),
            (
                "out/avg.jsonl",
                "out/other.jsonl",
                "stage `out`: `path` changed",
            ),
            (
                "out/dead.jsonl",
                "out/dead2.jsonl",
                "`[dead_letter]` changed",
            ),
            (
                "type = \"file\"",
                "type = \"console\"",
                "stage `out`: `type` changed",
            ),
            (
                "[stages.out]",
                "[stages.results]",
                "stage `out` was removed",
            ),
        ] {
            assert!(BASE.contains(from), "{from}");
            let d = diff_of(&BASE.replace(from, to), None);
            assert!(d.restart.iter().any(|r| r == said), "{from} → {to}: {d:?}");
        }
        let added = format!("{BASE}\n[checkpoint]\ninterval = \"5s\"\n");
        assert_eq!(diff_of(&added, None).restart, ["`[checkpoint]` changed"]);
    }

    #[test]
    fn a_plugin_change_beside_a_restart_is_not_swapped_alone() {
        // The caller applies nothing when anything needs a restart; the diff still lists both.
        let new = BASE
            .replace("plugin = \"scale\"", "plugin = \"max\"")
            .replace("speed = 10", "speed = 1");
        let d = diff_of(&new, None);
        assert_eq!(d.restart, ["stage `events`: `speed` changed"]);
        assert_eq!(d.swap.len(), 1);
    }

    #[test]
    fn files_are_read_once_they_stand_still() {
        let mut s = Settle::new(1);
        assert!(!s.look(1), "unchanged");
        assert!(
            !s.look(2),
            "changed since the last look: perhaps still being written"
        );
        assert!(!s.look(3), "still changing");
        assert!(s.look(3), "as the look before");
        assert!(!s.look(3), "taken already");
        assert!(!s.look(1));
        assert!(s.look(1), "back to how it was before is a change too");
    }

    #[test]
    fn only_path_plugins_are_watched_files() {
        let table: toml::Table = BASE.parse().unwrap();
        assert_eq!(
            plugin_files(&table, Path::new("/p")),
            [PathBuf::from("/p/plugins/avg.wasm")]
        );
    }
}
