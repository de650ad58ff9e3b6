//! Host bindings generated from the WIT files in `plugins/wit/`, the single source of truth for the ABI.
//!
//! Four versions are bound: 0.4 (`plugins/wit/tributary.wit`, what the SDK builds), and 0.3, 0.2 and
//! 0.1 (`plugins/wit/0.3/`, `0.2/`, `0.1/`, frozen, so plugins built against them keep working). The
//! types they share (columns, batches, specs, config values) are 0.4's Rust types for all: the older
//! ones are the same shapes (wasmtime checks a component's types by structure, not by package), so one
//! set of conversions serves every version. Each version imports its own `host` interface, so 0.3's
//! and 0.2's are bound apart and implemented by delegating to 0.4's.

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

/// ABI 0.3: the transform is 0.4's; the aggregate's `finish` takes a record per pane.
pub mod v03 {
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.3",
            world: "transform-plugin",
            with: { "tributary:plugin/types": crate::plugin::bindings::types },
        });
    }

    pub mod aggregate {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.3",
            world: "aggregate-plugin",
            with: {
                "tributary:plugin/types": crate::plugin::bindings::types,
                "tributary:plugin/host": super::transform::tributary::plugin::host,
            },
        });
    }

    pub use transform::tributary::plugin::host;
}

/// ABI 0.2.
pub mod v02 {
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.2",
            world: "transform-plugin",
            with: { "tributary:plugin/types": crate::plugin::bindings::types },
        });
    }

    pub mod aggregate {
        wasmtime::component::bindgen!({
            path: "../plugins/wit/0.2",
            world: "aggregate-plugin",
            with: {
                "tributary:plugin/types": crate::plugin::bindings::types,
                "tributary:plugin/host": super::transform::tributary::plugin::host,
            },
        });
    }

    pub use transform::tributary::plugin::host;
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
