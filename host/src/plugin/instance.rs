//! A plugin instantiated for one stage: its own `Store`, a memory cap, a deadline per call, and typed
//! calls.
//!
//! The sandbox: a plugin imports nothing (no files, network or clock), its linear memory is capped
//! (`memory_limit`), and every call runs under a deadline (`timeout`), enforced with wasmtime's epoch
//! interruption: a clock thread ticks the engine every [`TICK`], and at each tick a running call checks
//! its deadline, and whether the run was asked to stop.

use super::bindings::{
    aggregate::exports::tributary::plugin::aggregate as agg4, aggregate::AggregatePlugin,
    transform::exports::tributary::plugin::transform as tr4, transform::TransformPlugin,
    types as wit, v01, v02, v03, ConfigValue,
};
use super::columns::FieldSpec;
use super::panes::Pane;
use super::{Abi, Plugin, PluginError};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, UpdateDeadline};

/// How often running plugin calls check their deadline.
pub const TICK: Duration = Duration::from_millis(10);

/// A call still running this long after a stop signal is interrupted.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What a stage allows its plugin.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest a call (`init`, or one batch) may run.
    pub timeout: Duration,
    /// Most linear memory the plugin's instance may have, in bytes.
    pub memory: u64,
}

impl Limits {
    /// The limits a stage's `timeout` and `memory_limit` ask for; `None` keeps the default.
    pub fn from_config(
        timeout: Option<crate::config::Duration>,
        memory: Option<crate::config::ByteSize>,
    ) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(t) = timeout {
            if t.millis() <= 0 {
                return Err("`timeout` must be longer than 0, like `timeout = \"5s\"`".into());
            }
            limits.timeout = Duration::from_millis(t.millis() as u64);
        }
        if let Some(m) = memory {
            if m.bytes() < 2 << 20 {
                return Err(format!(
                    "`memory_limit` of {m} is too small for a plugin; give at least `2MiB`"
                ));
            }
            limits.memory = m.bytes();
        }
        Ok(limits)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(5),
            memory: 512 << 20,
        }
    }
}

/// Why the host ended a call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stopped {
    Timeout,
    Memory,
    Interrupted,
}

pub struct State {
    limits: Limits,
    /// The call running, and since when.
    call: Option<(&'static str, Instant)>,
    stopped: Option<Stopped>,
    /// When a running call first saw the stop signal.
    stop_seen: Option<Instant>,
    /// What the plugin said as it panicked in the running call (ABI 0.2's `panicked`).
    panic: Option<String>,
    log: Log,
}

/// A plugin's log lines (ABI 0.2's `log`): shown on stderr with a label, at most [`LOG_LINES_PER_SECOND`].
struct Log {
    /// Who is speaking, like "stage `avg`"; the plugin until the stage names itself.
    label: String,
    /// The current second, the lines shown in it, and the lines dropped since the last shown.
    second: Instant,
    shown: u32,
    dropped: u64,
}

const LOG_LINES_PER_SECOND: u32 = 20;

/// A plugin's text made safe for one line of stderr: no line breaks, at most 1000 bytes.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 1000 {
        let mut end = 1000;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

impl Log {
    /// The lines to print for one log call: none while over the rate, else the line, after a note of
    /// what was dropped.
    fn line(&mut self, now: Instant, level: &str, message: &str) -> Vec<String> {
        if now.duration_since(self.second) >= Duration::from_secs(1) {
            self.second = now;
            self.shown = 0;
        }
        if self.shown >= LOG_LINES_PER_SECOND {
            self.dropped += 1;
            return Vec::new();
        }
        self.shown += 1;
        let mut out = Vec::new();
        if self.dropped > 0 {
            out.push(format!(
                "{}: {} log line(s) dropped (more than {LOG_LINES_PER_SECOND} a second)",
                self.label, self.dropped
            ));
            self.dropped = 0;
        }
        out.push(format!("{}: {level}: {}", self.label, one_line(message)));
        out
    }
}

impl super::bindings::host::Host for State {
    fn panicked(&mut self, message: String) {
        // A plugin could call this in a loop; one message of bounded size is all the error needs.
        self.panic.get_or_insert(one_line(&message));
    }

    fn log(&mut self, level: super::bindings::host::Level, message: String) {
        use super::bindings::host::Level;
        let level = match level {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        for line in self.log.line(Instant::now(), level, &message) {
            eprintln!("{line}");
        }
    }
}

/// Older ABIs import their own `host` interface (`host@0.3.0`, `host@0.2.0`), with the same functions
/// as today's: each delegates to it.
macro_rules! older_host {
    ($($abi:ident),+) => {$(
        impl $abi::host::Host for State {
            fn panicked(&mut self, message: String) {
                super::bindings::host::Host::panicked(self, message)
            }

            fn log(&mut self, level: $abi::host::Level, message: String) {
                use super::bindings::host::Level;
                let level = match level {
                    $abi::host::Level::Error => Level::Error,
                    $abi::host::Level::Warn => Level::Warn,
                    $abi::host::Level::Info => Level::Info,
                    $abi::host::Level::Debug => Level::Debug,
                };
                super::bindings::host::Host::log(self, level, message)
            }
        }
    )+};
}

older_host!(v03, v02);

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory {
            // An error, not a refusal: a refused grow aborts a Rust plugin with no word of why.
            self.stopped = Some(Stopped::Memory);
            wasmtime::bail!("memory limit reached");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        4
    }
}

fn store(engine: &Engine, limits: Limits, label: String) -> Store<State> {
    let mut store = Store::new(
        engine,
        State {
            limits,
            call: None,
            stopped: None,
            stop_seen: None,
            panic: None,
            log: Log {
                label,
                second: Instant::now(),
                shown: 0,
                dropped: 0,
            },
        },
    );
    store.limiter(|s| s);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if let Some((_, since)) = state.call {
            let running = since.elapsed();
            if running > state.limits.timeout {
                state.stopped = Some(Stopped::Timeout);
                wasmtime::bail!("deadline passed");
            }
            if super::INTERRUPT.load(std::sync::atomic::Ordering::Relaxed) {
                let seen = *state.stop_seen.get_or_insert_with(Instant::now);
                if seen.elapsed() > STOP_GRACE {
                    state.stopped = Some(Stopped::Interrupted);
                    wasmtime::bail!("interrupted");
                }
            }
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store
}

/// Runs one plugin call under the store's deadline and turns a failure into its cause.
fn call<T>(
    store: &mut Store<State>,
    plugin: &Plugin,
    name: &'static str,
    f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<T>,
) -> Result<T, PluginError> {
    // The grace after a stop counts per call: a call that starts after Ctrl-C (a stage finishing
    // the batches before the last checkpoint barrier) gets its own second, as a call already running.
    store.data_mut().stop_seen = None;
    store.data_mut().call = Some((name, Instant::now()));
    store.data_mut().stopped = None;
    store.data_mut().panic = None;
    store.set_epoch_deadline(1);
    let result = f(store);
    store.data_mut().call = None;
    result.map_err(|e| failure(store.data(), plugin, name, &e))
}

fn failure(state: &State, plugin: &Plugin, call: &str, e: &wasmtime::Error) -> PluginError {
    let what = plugin.what.clone();
    let call = call.to_string();
    match state.stopped {
        Some(Stopped::Timeout) => PluginError::Timeout {
            what,
            call,
            limit: state.limits.timeout,
        },
        Some(Stopped::Memory) => PluginError::Memory {
            what,
            call,
            limit: crate::config::ByteSize(state.limits.memory),
        },
        Some(Stopped::Interrupted) => PluginError::Interrupted { what, call },
        None => {
            // The trap itself, not wasmtime's backtrace of mangled frames.
            let message = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::UnreachableCodeReached) if state.panic.is_some() => {
                    format!("it panicked: {}", state.panic.as_deref().unwrap_or_default())
                }
                Some(wasmtime::Trap::UnreachableCodeReached) => {
                    "it panicked or aborted (a Rust plugin built with the SDK aborts on panic; run its \
                     unit tests natively to see the message)"
                        .to_string()
                }
                Some(trap) => trap.to_string(),
                None => e.root_cause().to_string(),
            };
            PluginError::Trap {
                what,
                message: format!("in `{call}`: {message}"),
            }
        }
    }
}

/// The fields a plugin declared.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub inputs: Vec<FieldSpec>,
    pub outputs: Vec<FieldSpec>,
    /// Fields a transform removes from its output rows (ABI 0.3); empty for aggregates.
    pub drops: Vec<String>,
}

impl From<wit::Spec> for Spec {
    fn from(s: wit::Spec) -> Self {
        Spec {
            inputs: s.inputs.into_iter().map(Into::into).collect(),
            outputs: s.outputs.into_iter().map(Into::into).collect(),
            drops: Vec::new(),
        }
    }
}

/// 0.3's transform is 0.4's, declared in 0.3's own interface.
mod tr3 {
    pub use super::v03::transform::exports::tributary::plugin::transform::*;
}

/// `finish` of an ABI before 0.4, which takes a record per pane (`$pane`, that ABI's own type).
macro_rules! finish_by_pane {
    ($bindings:expr, $store:expr, $panes:expr, $($pane:ident)::+) => {{
        let list: Vec<_> = $panes
            .list()
            .into_iter()
            .map(
                |Pane {
                     slot,
                     start,
                     end,
                     key,
                 }| $($pane)::+ {
                    slot,
                    start,
                    end,
                    key,
                },
            )
            .collect();
        let f = $bindings
            .tributary_plugin_aggregate()
            .call_finish($store, &list)?;
        Ok(Finished {
            rows: f.rows,
            columns: f.columns,
        })
    }};
}

/// A transform's spec, from 0.4's or 0.3's declaration of the same record.
macro_rules! spec_from_transform {
    ($($spec:ty),+) => {$(
        impl From<$spec> for Spec {
            fn from(s: $spec) -> Self {
                Spec {
                    inputs: s.inputs.into_iter().map(Into::into).collect(),
                    outputs: s.outputs.into_iter().map(Into::into).collect(),
                    drops: s.drops,
                }
            }
        }
    )+};
}

spec_from_transform!(tr4::TransformSpec, tr3::TransformSpec);

/// What made an instance, to make it again after a failure: a trap leaves an instance unusable.
struct Recipe {
    engine: Engine,
    linker: Linker<State>,
    config: Vec<(String, ConfigValue)>,
    limits: Limits,
}

impl Recipe {
    fn new(
        engine: &Engine,
        linker: &Linker<State>,
        config: &[(String, ConfigValue)],
        limits: Limits,
    ) -> Self {
        Recipe {
            engine: engine.clone(),
            linker: linker.clone(),
            config: config.to_vec(),
            limits,
        }
    }
}

/// A restarted instance must declare the fields the first one did: the stage was built for those.
fn same_spec(before: &Spec, after: &Spec, plugin: &Plugin) -> Result<(), PluginError> {
    if before == after {
        Ok(())
    } else {
        Err(PluginError::Trap {
            what: plugin.what.clone(),
            message: "after a restart it declares other fields than before".into(),
        })
    }
}

/// A transform's bindings, per ABI version.
enum TransformBindings {
    V0_1(v01::transform::TransformPlugin),
    V0_2(v02::transform::TransformPlugin),
    V0_3(v03::transform::TransformPlugin),
    V0_4(TransformPlugin),
}

/// Columns of an ABI that had no nulls, as 0.3's nullable columns.
fn all_valid(columns: Vec<wit::Column>) -> Vec<wit::NullableColumn> {
    columns
        .into_iter()
        .map(|values| wit::NullableColumn {
            values,
            valid: None,
        })
        .collect()
}

pub struct TransformInstance {
    plugin: Plugin,
    store: Store<State>,
    bindings: TransformBindings,
    pub spec: Spec,
    recipe: Recipe,
}

pub use tr4::{Flushed, Transformed};

impl TransformInstance {
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<State>,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut store = store(engine, limits, format!("plugin {}", plugin.what));
        let bindings =
            call(&mut store, plugin, "instantiate", |s| {
                Ok(match plugin.abi {
                    Abi::V0_1 => TransformBindings::V0_1(
                        v01::transform::TransformPlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_2 => TransformBindings::V0_2(
                        v02::transform::TransformPlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_3 => TransformBindings::V0_3(
                        v03::transform::TransformPlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_4 => TransformBindings::V0_4(TransformPlugin::instantiate(
                        s,
                        &plugin.component,
                        linker,
                    )?),
                })
            })?;
        let spec: Result<Spec, String> = call(&mut store, plugin, "init", |s| {
            Ok(match &bindings {
                TransformBindings::V0_1(b) => b
                    .tributary_plugin_transform()
                    .call_init(s, config)?
                    .map(Spec::from),
                TransformBindings::V0_2(b) => b
                    .tributary_plugin_transform()
                    .call_init(s, config)?
                    .map(Spec::from),
                TransformBindings::V0_3(b) => b
                    .tributary_plugin_transform()
                    .call_init(s, config)?
                    .map(Spec::from),
                TransformBindings::V0_4(b) => b
                    .tributary_plugin_transform()
                    .call_init(s, config)?
                    .map(Spec::from),
            })
        })?;
        let spec = spec.map_err(|message| PluginError::Init {
            what: plugin.what.clone(),
            message,
        })?;
        Ok(TransformInstance {
            plugin: plugin.clone(),
            store,
            bindings,
            spec,
            recipe: Recipe::new(engine, linker, config, limits),
        })
    }

    /// A fresh instance of the same plugin and config, in place of one whose call failed (a trap
    /// leaves an instance unusable). It must declare the same fields as before.
    pub fn restart(&mut self) -> Result<(), PluginError> {
        let r = &self.recipe;
        let fresh =
            TransformInstance::new(&r.engine, &r.linker, &self.plugin, &r.config, r.limits)?;
        same_spec(&self.spec, &fresh.spec, &self.plugin)?;
        let label = std::mem::take(&mut self.store.data_mut().log.label);
        *self = fresh;
        self.set_log_label(label);
        Ok(())
    }

    pub fn apply(&mut self, input: &wit::Batch) -> Result<Transformed, PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "apply", |s| match b {
            TransformBindings::V0_1(b) => {
                let t = b.tributary_plugin_transform().call_apply(s, input)?;
                Ok(Transformed {
                    rows: t.rows,
                    columns: all_valid(t.columns),
                    errors: t.errors,
                })
            }
            TransformBindings::V0_2(b) => {
                let t = b.tributary_plugin_transform().call_apply(s, input)?;
                Ok(Transformed {
                    rows: t.rows,
                    columns: all_valid(t.columns),
                    errors: t.errors,
                })
            }
            TransformBindings::V0_3(b) => {
                let t = b.tributary_plugin_transform().call_apply(s, input)?;
                Ok(Transformed {
                    rows: t.rows,
                    columns: t.columns,
                    errors: t.errors,
                })
            }
            TransformBindings::V0_4(b) => b.tributary_plugin_transform().call_apply(s, input),
        })
    }

    /// The rows the plugin adds at the end of input (since ABI 0.3); none before 0.3, which had no
    /// `finish`.
    pub fn finish(&mut self) -> Result<Flushed, PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "finish", |s| match b {
            TransformBindings::V0_1(_) | TransformBindings::V0_2(_) => Ok(Flushed {
                rows: 0,
                columns: Vec::new(),
            }),
            TransformBindings::V0_3(b) => {
                let f = b.tributary_plugin_transform().call_finish(s)?;
                Ok(Flushed {
                    rows: f.rows,
                    columns: f.columns,
                })
            }
            TransformBindings::V0_4(b) => b.tributary_plugin_transform().call_finish(s),
        })
    }

    pub fn what(&self) -> &str {
        &self.plugin.what
    }

    /// Names the stage in the plugin's log lines, like "stage `avg`".
    pub fn set_log_label(&mut self, label: String) {
        self.store.data_mut().log.label = label;
    }
}

/// An aggregate's bindings, per ABI version.
enum AggregateBindings {
    V0_1(v01::aggregate::AggregatePlugin),
    V0_2(v02::aggregate::AggregatePlugin),
    V0_3(v03::aggregate::AggregatePlugin),
    V0_4(AggregatePlugin),
}

/// Calls one aggregate function, whichever the plugin's ABI version: they share every signature but
/// `finish`'s.
macro_rules! every {
    ($bindings:expr, |$a:ident| $call:expr) => {
        match $bindings {
            AggregateBindings::V0_1(b) => {
                let $a = b.tributary_plugin_aggregate();
                $call
            }
            AggregateBindings::V0_2(b) => {
                let $a = b.tributary_plugin_aggregate();
                $call
            }
            AggregateBindings::V0_3(b) => {
                let $a = b.tributary_plugin_aggregate();
                $call
            }
            AggregateBindings::V0_4(b) => {
                let $a = b.tributary_plugin_aggregate();
                $call
            }
        }
    };
}

pub use agg4::{Bounds, Finished, KeyColumn, KeyDict, KeyValues, Keys, Panes};

pub struct AggregateInstance {
    plugin: Plugin,
    store: Store<State>,
    bindings: AggregateBindings,
    pub spec: Spec,
    recipe: Recipe,
}

impl AggregateInstance {
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<State>,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut store = store(engine, limits, format!("plugin {}", plugin.what));
        let bindings =
            call(&mut store, plugin, "instantiate", |s| {
                Ok(match plugin.abi {
                    Abi::V0_1 => AggregateBindings::V0_1(
                        v01::aggregate::AggregatePlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_2 => AggregateBindings::V0_2(
                        v02::aggregate::AggregatePlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_3 => AggregateBindings::V0_3(
                        v03::aggregate::AggregatePlugin::instantiate(s, &plugin.component, linker)?,
                    ),
                    Abi::V0_4 => AggregateBindings::V0_4(AggregatePlugin::instantiate(
                        s,
                        &plugin.component,
                        linker,
                    )?),
                })
            })?;
        let spec = call(&mut store, plugin, "init", |s| {
            every!(&bindings, |a| a.call_init(s, config))
        })?
        .map_err(|message| PluginError::Init {
            what: plugin.what.clone(),
            message,
        })?;
        Ok(AggregateInstance {
            plugin: plugin.clone(),
            store,
            bindings,
            spec: spec.into(),
            recipe: Recipe::new(engine, linker, config, limits),
        })
    }

    /// A fresh, empty instance of the same plugin and config, in place of one whose call failed (a trap
    /// leaves an instance unusable). It must declare the same fields as before.
    pub fn restart(&mut self) -> Result<(), PluginError> {
        let r = &self.recipe;
        let fresh =
            AggregateInstance::new(&r.engine, &r.linker, &self.plugin, &r.config, r.limits)?;
        same_spec(&self.spec, &fresh.spec, &self.plugin)?;
        let label = std::mem::take(&mut self.store.data_mut().log.label);
        *self = fresh;
        self.set_log_label(label);
        Ok(())
    }

    pub fn what(&self) -> &str {
        &self.plugin.what
    }

    /// Names the stage in the plugin's log lines, like "stage `avg`".
    pub fn set_log_label(&mut self, label: String) {
        self.store.data_mut().log.label = label;
    }

    pub fn add(
        &mut self,
        slots: &[u32],
        input: &wit::Batch,
    ) -> Result<Vec<wit::RowError>, PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "add", |s| {
            every!(b, |a| a.call_add(s, slots, input))
        })
    }

    pub fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "merge", |s| {
            every!(b, |a| a.call_merge(s, dst, src))
        })
    }

    /// The results of `panes`. A 0.4 plugin takes them as they are, in columns; 0.2 and 0.3 plugins
    /// take a record per pane; a 0.1 plugin sees only the slots, and its one row per slot comes back
    /// as rows `0, 1, …` without nulls, so callers see one shape.
    pub fn finish(&mut self, panes: &Panes) -> Result<Finished, PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "finish", |s| match b {
            AggregateBindings::V0_1(b) => {
                let batch = b
                    .tributary_plugin_aggregate()
                    .call_finish(s, &panes.slots)?;
                Ok(Finished {
                    rows: (0..batch.rows).collect(),
                    columns: batch
                        .columns
                        .into_iter()
                        .map(|values| wit::NullableColumn {
                            values,
                            valid: None,
                        })
                        .collect(),
                })
            }
            // 0.2's and 0.3's `pane` and `finished` are the same shapes, each declared in its
            // version's own interface.
            AggregateBindings::V0_2(b) => finish_by_pane!(
                b,
                s,
                panes,
                v02::aggregate::exports::tributary::plugin::aggregate::Pane
            ),
            AggregateBindings::V0_3(b) => finish_by_pane!(
                b,
                s,
                panes,
                v03::aggregate::exports::tributary::plugin::aggregate::Pane
            ),
            AggregateBindings::V0_4(b) => b.tributary_plugin_aggregate().call_finish(s, panes),
        })
    }

    pub fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "save", |s| {
            every!(b, |a| a.call_save(s, slot))
        })
    }

    pub fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "load", |s| {
            every!(b, |a| a.call_load(s, slot, state))
        })?
        .map_err(|message| PluginError::Trap {
            what: self.plugin.what.clone(),
            message,
        })
    }

    pub fn free(&mut self, slots: &[u32]) -> Result<(), PluginError> {
        let b = &self.bindings;
        call(&mut self.store, &self.plugin, "free", |s| {
            every!(b, |a| a.call_free(s, slots))
        })
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn log_lines_are_one_line_each_and_rate_limited_with_a_count_of_the_dropped() {
        let start = Instant::now();
        let mut log = Log {
            label: "stage `t`".into(),
            second: start,
            shown: 0,
            dropped: 0,
        };
        let first = log.line(start, "info", "two\nlines");
        assert_eq!(first, ["stage `t`: info: two lines"]);
        let mut shown = 1;
        for _ in 0..100 {
            shown += log.line(start, "debug", "x").len();
        }
        assert_eq!(shown, LOG_LINES_PER_SECOND as usize);
        let later = log.line(start + Duration::from_millis(1001), "warning", "y");
        assert_eq!(
            later,
            [
                "stage `t`: 81 log line(s) dropped (more than 20 a second)",
                "stage `t`: warning: y"
            ]
        );
        assert!(one_line(&"é".repeat(600)).ends_with('…'));
    }
}
