//! A plugin instantiated for one stage: its own `Store`, a memory cap, and typed calls.

use super::bindings::{
    aggregate::AggregatePlugin, transform::TransformPlugin, types as wit, ConfigValue,
};
use super::columns::FieldSpec;
use super::{Plugin, PluginError};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

/// A plugin's linear memory may not grow past this; a runaway plugin traps instead of eating the host.
const MEMORY_LIMIT: usize = 512 << 20;

pub struct State {
    limits: StoreLimits,
}

fn store(engine: &Engine) -> Store<State> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(MEMORY_LIMIT)
        .instances(4)
        .build();
    let mut store = Store::new(engine, State { limits });
    store.limiter(|s| &mut s.limits);
    store
}

fn trap(plugin: &Plugin, e: wasmtime::Error) -> PluginError {
    PluginError::Trap {
        what: plugin.what.clone(),
        message: format!("{e:#}"),
    }
}

/// The fields a plugin declared.
#[derive(Clone, Debug)]
pub struct Spec {
    pub inputs: Vec<FieldSpec>,
    pub outputs: Vec<FieldSpec>,
}

impl From<wit::Spec> for Spec {
    fn from(s: wit::Spec) -> Self {
        Spec {
            inputs: s.inputs.into_iter().map(Into::into).collect(),
            outputs: s.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

pub struct TransformInstance {
    plugin: Plugin,
    store: Store<State>,
    bindings: TransformPlugin,
    pub spec: Spec,
}

pub use super::bindings::transform::exports::tributary::plugin::transform::Transformed;

impl TransformInstance {
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<State>,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
    ) -> Result<Self, PluginError> {
        let mut store = store(engine);
        let bindings = TransformPlugin::instantiate(&mut store, &plugin.component, linker)
            .map_err(|e| trap(plugin, e))?;
        let spec = bindings
            .tributary_plugin_transform()
            .call_init(&mut store, config)
            .map_err(|e| trap(plugin, e))?
            .map_err(|message| PluginError::Init {
                what: plugin.what.clone(),
                message,
            })?;
        Ok(TransformInstance {
            plugin: plugin.clone(),
            store,
            bindings,
            spec: spec.into(),
        })
    }

    pub fn apply(&mut self, input: &wit::Batch) -> Result<Transformed, PluginError> {
        self.bindings
            .tributary_plugin_transform()
            .call_apply(&mut self.store, input)
            .map_err(|e| trap(&self.plugin, e))
    }

    pub fn what(&self) -> &str {
        &self.plugin.what
    }
}

pub struct AggregateInstance {
    plugin: Plugin,
    store: Store<State>,
    bindings: AggregatePlugin,
    pub spec: Spec,
}

impl AggregateInstance {
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<State>,
        plugin: &Plugin,
        config: &[(String, ConfigValue)],
    ) -> Result<Self, PluginError> {
        let mut store = store(engine);
        let bindings = AggregatePlugin::instantiate(&mut store, &plugin.component, linker)
            .map_err(|e| trap(plugin, e))?;
        let spec = bindings
            .tributary_plugin_aggregate()
            .call_init(&mut store, config)
            .map_err(|e| trap(plugin, e))?
            .map_err(|message| PluginError::Init {
                what: plugin.what.clone(),
                message,
            })?;
        Ok(AggregateInstance {
            plugin: plugin.clone(),
            store,
            bindings,
            spec: spec.into(),
        })
    }

    pub fn what(&self) -> &str {
        &self.plugin.what
    }

    pub fn add(
        &mut self,
        slots: &[u32],
        input: &wit::Batch,
    ) -> Result<Vec<wit::RowError>, PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_add(&mut self.store, slots, input)
            .map_err(|e| trap(&self.plugin, e))
    }

    pub fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_merge(&mut self.store, dst, src)
            .map_err(|e| trap(&self.plugin, e))
    }

    pub fn finish(&mut self, slots: &[u32]) -> Result<wit::Batch, PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_finish(&mut self.store, slots)
            .map_err(|e| trap(&self.plugin, e))
    }

    pub fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_save(&mut self.store, slot)
            .map_err(|e| trap(&self.plugin, e))
    }

    pub fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_load(&mut self.store, slot, state)
            .map_err(|e| trap(&self.plugin, e))?
            .map_err(|message| PluginError::Trap {
                what: self.plugin.what.clone(),
                message,
            })
    }

    pub fn free(&mut self, slots: &[u32]) -> Result<(), PluginError> {
        self.bindings
            .tributary_plugin_aggregate()
            .call_free(&mut self.store, slots)
            .map_err(|e| trap(&self.plugin, e))
    }
}
