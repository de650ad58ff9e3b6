//! Host bindings generated from `plugins/wit/tributary.wit`, the single source of truth for the ABI.

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "transform-plugin",
    });
}

pub mod aggregate {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "aggregate-plugin",
        // One set of ABI types for both worlds, so the same conversions serve both.
        with: { "tributary:plugin/types": super::transform::tributary::plugin::types },
    });
}

pub use transform::tributary::plugin::types;
pub use types::ConfigValue;
