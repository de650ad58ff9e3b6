//! Plugins: one wasmtime `Engine`, components compiled once and cached on disk, one `Store` per stage.
//!
//! A plugin is named (a bundled one, embedded in this binary) or a path to a `.wasm` file: either a
//! component, or a core module built by the SDK for `wasm32-unknown-unknown`, which is turned into a
//! component here. Plugins import nothing but the host's `panicked` and `log` (since ABI 0.2): no files,
//! no network, no clock.
//!
//! Four ABI versions load: 0.4, what the SDK builds, and 0.3, 0.2 and 0.1, so plugins built before
//! keep working.
//! The version is read from the name of the interface a component exports (see [`Abi`]).

mod bindings;
mod cache;
mod columns;
mod instance;
mod panes;

pub use bindings::types as wit;
pub use bindings::ConfigValue;
pub use columns::{
    check_outputs, from_wit, from_wit_nullable, to_wit, Converted, FieldSpec, FieldType,
};
pub use instance::{
    AggregateInstance, Bounds, Finished, Flushed, KeyColumn, KeyDict, KeyValues, Keys, Limits,
    Panes, Spec, TransformInstance, Transformed,
};
pub use panes::{key_shape, KeyShape, KeyType, Pane};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// What a plugin does, read from the interface its component exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Transform,
    Aggregate,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Transform => "transform",
            PluginKind::Aggregate => "aggregate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no bundled plugin named `{name}`; bundled plugins are: {}. To use your own, give the path to its `.wasm` file, like `plugin = \"plugins/my_plugin.wasm\"`", bundled_names().join(", "))]
    UnknownName { name: String },
    #[error("cannot read plugin file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{what}` is not a valid plugin: {message}")]
    Invalid { what: String, message: String },
    #[error("`{what}` is a {found} plugin, but this stage needs {wanted}")]
    WrongKind {
        what: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("plugin `{what}` rejected its config: {message}")]
    Init { what: String, message: String },
    #[error("plugin `{what}` failed: {message}")]
    Trap { what: String, message: String },
    #[error("plugin `{what}` did not return from `{call}` within {limit:?} (the stage's `timeout`); fix the plugin if it loops, or raise `timeout`")]
    Timeout {
        what: String,
        call: String,
        limit: std::time::Duration,
    },
    #[error("plugin `{what}` went over its memory limit of {limit} in `{call}` (the stage's `memory_limit`); fix the plugin if it leaks, or raise `memory_limit`")]
    Memory {
        what: String,
        call: String,
        limit: crate::config::ByteSize,
    },
    #[error("plugin `{what}` was interrupted in `{call}` by the stop signal")]
    Interrupted { what: String, call: String },
}

/// The ABI version a plugin was built against, read from its exported interface's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// `tributary:plugin@0.1.0`: one result row per slot, no nulls, no window bounds at `finish`.
    V0_1,
    /// `tributary:plugin@0.2.0`: `finish` sees each slot's window and key, returns any number of rows
    /// per slot, and values may be null.
    V0_2,
    /// `tributary:plugin@0.3.0`: a transform declares the fields it drops, its outputs may be null, and
    /// it has a `finish` at the end of input.
    V0_3,
    /// `tributary:plugin@0.4.0`: an aggregate's `finish` takes its panes in columns.
    V0_4,
}

impl Abi {
    /// The version as the WIT package names it, like `0.3.0`.
    pub fn version(self) -> &'static str {
        match self {
            Abi::V0_1 => "0.1.0",
            Abi::V0_2 => "0.2.0",
            Abi::V0_3 => "0.3.0",
            Abi::V0_4 => "0.4.0",
        }
    }
}

/// The ABI versions this host loads, for messages.
pub const SUPPORTED_ABIS: &str = "0.1.0, 0.2.0, 0.3.0 and 0.4.0";

/// Set by the first stop signal: plugin calls still running a second later are interrupted, so a
/// plugin that loops cannot hold a run that was asked to stop. Only an atomic store, so a signal
/// handler may set it.
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

pub fn bundled_names() -> Vec<&'static str> {
    bundled::BUNDLED.iter().map(|(name, _, _)| *name).collect()
}

/// A compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    /// How the config named it, for messages.
    pub what: String,
    pub kind: PluginKind,
    pub abi: Abi,
    component: Component,
}

/// Compiles and caches plugins; shared by every stage of a run.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<instance::State>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<u64, Plugin>>,
}

impl PluginHost {
    pub fn new() -> Result<Self, PluginError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Invalid {
            what: "engine".into(),
            message: format!("{e:#}"),
        })?;
        // The clock of every call's deadline (see `instance`): it only bumps a counter.
        let clock = engine.weak();
        std::thread::Builder::new()
            .name("plugin-clock".into())
            .spawn(move || {
                while let Some(engine) = clock.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(instance::TICK);
                }
            })
            .map_err(|e| PluginError::Invalid {
                what: "engine".into(),
                message: format!("cannot start the plugin clock thread: {e}"),
            })?;
        let mut linker = Linker::new(&engine);
        // The one import of 0.2, 0.3 and 0.4 plugins, each version's own; 0.1 plugins import nothing.
        bindings::host::add_to_linker::<instance::State, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .and_then(|_| {
            bindings::v03::host::add_to_linker::<instance::State, wasmtime::component::HasSelf<_>>(
                &mut linker,
                |s| s,
            )
        })
        .and_then(|_| {
            bindings::v02::host::add_to_linker::<instance::State, wasmtime::component::HasSelf<_>>(
                &mut linker,
                |s| s,
            )
        })
        .map_err(|e| PluginError::Invalid {
            what: "engine".into(),
            message: format!("{e:#}"),
        })?;
        Ok(PluginHost {
            engine,
            linker,
            cache_dir: default_cache_dir(),
            loaded: Mutex::default(),
        })
    }

    /// Resolves a plugin named in a config: a bundled name, or a path (relative to `base_dir`).
    pub fn load(&self, spec: &str, base_dir: &Path) -> Result<Plugin, PluginError> {
        let looks_like_path = spec.ends_with(".wasm") || spec.contains('/') || spec.contains('\\');
        if !looks_like_path {
            let Some((_, _, bytes)) = bundled::BUNDLED.iter().find(|(n, _, _)| *n == spec) else {
                return Err(PluginError::UnknownName {
                    name: spec.to_string(),
                });
            };
            return self.compile(spec, bytes);
        }
        let path = base_dir.join(spec);
        let bytes = std::fs::read(&path).map_err(|source| PluginError::Read {
            path: path.clone(),
            source,
        })?;
        self.compile(spec, &bytes)
    }

    fn compile(&self, what: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let invalid = |message: String| PluginError::Invalid {
            what: what.to_string(),
            message,
        };
        let key = {
            let mut h = std::hash::DefaultHasher::new();
            bytes.hash(&mut h);
            self.engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        if let Some(p) = self.loaded.lock().unwrap().get(&key) {
            return Ok(Plugin {
                what: what.to_string(),
                ..p.clone()
            });
        }
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{key:016x}.cwasm")));
        let component = match cached.as_ref().and_then(|p| self.load_cached(p)) {
            Some(c) => c,
            None => {
                let component_bytes = if wasmparser::Parser::is_component(bytes) {
                    bytes.to_vec()
                } else if wasmparser::Parser::is_core_wasm(bytes) {
                    check_module(bytes).map_err(invalid)?;
                    // wit-component trusts the metadata it reads; a panic there is a bad file, not a
                    // reason to stop.
                    std::panic::catch_unwind(|| {
                        wit_component::ComponentEncoder::default()
                            .module(bytes)
                            .and_then(|e| e.validate(true).encode())
                    })
                    .map_err(|_| {
                        invalid(
                            "its component metadata is malformed; build it with the tributary SDK"
                                .into(),
                        )
                    })?
                    .map_err(|e| invalid(format!("{e:#}; build it with the tributary SDK")))?
                } else {
                    return Err(invalid(not_wasm(bytes)));
                };
                let compiled = self
                    .engine
                    .precompile_component(&component_bytes)
                    .map_err(|e| invalid(format!("{e:#}")))?;
                if let Some(path) = &cached {
                    // The cache only saves time; failing to write it is not an error.
                    let _ = std::fs::create_dir_all(path.parent().unwrap())
                        .and_then(|_| std::fs::write(path.with_extension("tmp"), &compiled))
                        .and_then(|_| std::fs::rename(path.with_extension("tmp"), path));
                    cache::prune(path.parent().unwrap(), cache::MAX_BYTES);
                }
                // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
                unsafe { Component::deserialize(&self.engine, &compiled) }
                    .map_err(|e| invalid(format!("{e:#}")))?
            }
        };
        let (kind, abi) = kind_of(&self.engine, &component).map_err(invalid)?;
        let plugin = Plugin {
            what: what.to_string(),
            kind,
            abi,
            component,
        };
        self.loaded.lock().unwrap().insert(key, plugin.clone());
        Ok(plugin)
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the cache directory holds only artifacts this program wrote with `precompile_component`,
        // named by a hash of the source and of the engine's compatibility settings; wasmtime also checks
        // the artifact's version and settings and refuses a mismatch, which we treat as a cache miss.
        let component = unsafe { Component::deserialize_file(&self.engine, path) }.ok()?;
        cache::touch(path);
        Some(component)
    }

    /// Instantiates a transform plugin and hands it its config.
    pub fn transform(
        &self,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
        limits: Limits,
    ) -> Result<TransformInstance, PluginError> {
        want(plugin, PluginKind::Transform)?;
        TransformInstance::new(&self.engine, &self.linker, plugin, config, limits)
    }

    /// Instantiates an aggregate plugin and hands it its config.
    pub fn aggregate(
        &self,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
        limits: Limits,
    ) -> Result<AggregateInstance, PluginError> {
        want(plugin, PluginKind::Aggregate)?;
        AggregateInstance::new(&self.engine, &self.linker, plugin, config, limits)
    }
}

/// Why a core module cannot be a plugin, checked before wit-component reads it: a truncated or corrupt
/// module, or one built for WASI (plugins import nothing).
fn check_module(bytes: &[u8]) -> Result<(), String> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .map_err(|e| {
            format!("it is not a valid WebAssembly module ({e}); is the file complete?")
        })?;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::ImportSection(imports)) = payload else {
            continue;
        };
        for import in imports.into_imports().flatten() {
            if import.module.starts_with("wasi") {
                return Err(format!(
                    "it imports `{}` from `{}`: it was built for WASI (wasm32-wasip1 or -wasip2), but plugins import nothing; build it with `cargo build --target wasm32-unknown-unknown`",
                    import.name, import.module
                ));
            }
        }
    }
    Ok(())
}

/// What a file that is not WebAssembly looks like, for the error.
fn not_wasm(bytes: &[u8]) -> String {
    let kind = match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "an ELF file (a native library or program?)",
        [b'M', b'Z', ..] => "a Windows executable or DLL",
        [0xcf, 0xfa, 0xed, 0xfe, ..] | [0xfe, 0xed, 0xfa, 0xcf, ..] => "a Mach-O file",
        [] => "empty",
        _ => "not a WebAssembly file",
    };
    format!("{kind}; a plugin is a `.wasm` file built with `--target wasm32-unknown-unknown`")
}

fn want(plugin: &Plugin, kind: PluginKind) -> Result<(), PluginError> {
    if plugin.kind == kind {
        Ok(())
    } else {
        Err(PluginError::WrongKind {
            what: plugin.what.clone(),
            found: plugin.kind.as_str(),
            wanted: if kind == PluginKind::Transform {
                "a transform plugin"
            } else {
                "an aggregate plugin"
            },
        })
    }
}

/// What a component is, from the interface it exports: `tributary:plugin/transform@0.4.0` is a 0.4
/// transform. Otherwise, why it cannot be loaded: the versions supported and what it exports instead.
fn kind_of(engine: &Engine, component: &Component) -> Result<(PluginKind, Abi), String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    for name in &exports {
        let kind = match name.split('@').next() {
            Some("tributary:plugin/transform") => PluginKind::Transform,
            Some("tributary:plugin/aggregate") => PluginKind::Aggregate,
            _ => continue,
        };
        match name.rsplit('@').next() {
            Some("0.4.0") => return Ok((kind, Abi::V0_4)),
            Some("0.3.0") => return Ok((kind, Abi::V0_3)),
            Some("0.2.0") => return Ok((kind, Abi::V0_2)),
            Some("0.1.0") => return Ok((kind, Abi::V0_1)),
            _ => {}
        }
    }
    let found = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "it exports {found}, but a plugin exports `tributary:plugin/transform` or `tributary:plugin/aggregate` \
         of an ABI version this host supports ({SUPPORTED_ABIS}); rebuild it with a tributary SDK of one \
         of these versions, or use a tributary release that supports its version"
    ))
}

/// `$TRIBUTARY_CACHE_DIR`, else `$XDG_CACHE_HOME/tributary`, else `~/.cache/tributary`, plus `plugins`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("TRIBUTARY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("tributary")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary")))?;
    Some(base.join("plugins"))
}

#[cfg(test)]
mod tests;
