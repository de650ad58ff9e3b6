//! Host bindings generated from the WIT files in `plugins/wit/`, the single source of truth for the ABI.
//!
//! Two versions are bound: 0.2 (`plugins/wit/tributary.wit`, what the SDK builds) and 0.1
//! (`plugins/wit/0.1/tributary.wit`, frozen, so plugins built before 0.2 keep working). The types both
//! share (columns, batches, specs, config values) are 0.2's Rust types for both: 0.1's are the same shapes
//! (wasmtime checks a component's types by structure, not by package), so one set of conversions
//! serves every version.

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
        with: {
            "tributary:plugin/types": super::transform::tributary::plugin::types,
            "tributary:plugin/host": super::transform::tributary::plugin::host,
        },
    });
}

/// ABI 0.1.
pub mod v01 {
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.1",
            world: "transform-plugin",
            with: { "tributary:plugin/types": crate::plugin::bindings::types },
        });
    }

    pub mod aggregate {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.1",
            world: "aggregate-plugin",
            with: { "tributary:plugin/types": crate::plugin::bindings::types },
        });
    }
}

pub use transform::tributary::plugin::host;
pub use transform::tributary::plugin::types;
pub use types::ConfigValue;
