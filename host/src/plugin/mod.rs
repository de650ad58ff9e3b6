//! Plugins: one wasmtime `Engine`, components compiled once and cached on disk, one `Store` per stage.
//!
//! A plugin is named (a bundled one, embedded in this binary) or a path to a `.wasm` file: either a
//! component, or a core module built by the SDK for `wasm32-unknown-unknown`, which is turned into a
//! component here. Plugins import nothing: no files, no network, no clock.

mod bindings;
mod columns;
mod instance;

pub use bindings::types as wit;
pub use bindings::ConfigValue;
pub use columns::{from_wit, to_wit, Converted, FieldSpec, FieldType};
pub use instance::{AggregateInstance, Spec, TransformInstance, Transformed};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
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
}

pub fn bundled_names() -> Vec<&'static str> {
    bundled::BUNDLED.iter().map(|(name, _, _)| *name).collect()
}

/// A compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    /// How the config named it, for messages.
    pub what: String,
    pub kind: PluginKind,
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
        let engine = Engine::new(&config).map_err(|e| PluginError::Invalid {
            what: "engine".into(),
            message: format!("{e:#}"),
        })?;
        let linker = Linker::new(&engine);
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
                    wit_component::ComponentEncoder::default()
                        .module(bytes)
                        .and_then(|e| e.validate(true).encode())
                        .map_err(|e| invalid(format!("{e:#}; build it with the tributary SDK")))?
                } else {
                    return Err(invalid("not a WebAssembly file".into()));
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
                }
                // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
                unsafe { Component::deserialize(&self.engine, &compiled) }
                    .map_err(|e| invalid(format!("{e:#}")))?
            }
        };
        let kind = kind_of(&self.engine, &component).ok_or_else(|| {
            invalid(
                "it exports neither `tributary:plugin/transform` nor `tributary:plugin/aggregate`"
                    .into(),
            )
        })?;
        let plugin = Plugin {
            what: what.to_string(),
            kind,
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
        unsafe { Component::deserialize_file(&self.engine, path) }.ok()
    }

    /// Instantiates a transform plugin and hands it its config.
    pub fn transform(
        &self,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
    ) -> Result<TransformInstance, PluginError> {
        want(plugin, PluginKind::Transform)?;
        TransformInstance::new(&self.engine, &self.linker, plugin, config)
    }

    /// Instantiates an aggregate plugin and hands it its config.
    pub fn aggregate(
        &self,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
    ) -> Result<AggregateInstance, PluginError> {
        want(plugin, PluginKind::Aggregate)?;
        AggregateInstance::new(&self.engine, &self.linker, plugin, config)
    }
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

fn kind_of(engine: &Engine, component: &Component) -> Option<PluginKind> {
    let ty = component.component_type();
    for (name, _) in ty.exports(engine) {
        if name.starts_with("tributary:plugin/transform@") {
            return Some(PluginKind::Transform);
        }
        if name.starts_with("tributary:plugin/aggregate@") {
            return Some(PluginKind::Aggregate);
        }
    }
    None
}

/// `$TRIBUTARY_CACHE_DIR`, else `$XDG_CACHE_HOME/tributary`, else `~/.cache/tributary`, plus `plugins`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("TRIBUTARY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("tributary")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary")))?;
    Some(base.join("plugins"))
}
