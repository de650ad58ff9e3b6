//! Write Tributary plugins in a dozen lines.
//!
//! A plugin is a `cdylib` crate built for `wasm32-unknown-unknown`. It implements [`Transform`] or
//! [`Aggregate`] and names its type in [`export_transform!`] or [`export_aggregate!`]; the SDK does the
//! rest: the component bindings (generated from `plugins/wit/tributary.wit`, ABI 0.4), holding the
//! plugin's state between calls, reading its config table, and telling the host a panic's message.
//!
//! A transform maps, filters or repeats rows, may rename or remove fields ([`Spec::drop`]), write
//! nulls ([`Transformed::map_rows`]), and add rows at the end of its input ([`Transform::finish`]).
//! An aggregate's `finish` writes any number of rows (zero, one, several) for a window and key, and
//! may write nulls ([`RowWriter::null`]); it sees the window's bounds and key ([`Window`]).
//!
//! ```text
//! use tributary_sdk::*;
//!
//! struct Average { field: String }
//!
//! impl Aggregate for Average {
//!     type Acc = (f64, u64);
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Average { field: config.str("field")?.to_string() })
//!     }
//!     fn spec(&self) -> Spec {
//!         Spec::new().input(Field::float(&self.field)).output(Field::float("avg")).output(Field::int("count"))
//!     }
//!     fn add(&self, acc: &mut (f64, u64), row: Row) -> Result<(), String> {
//!         acc.0 += row.float(0);
//!         acc.1 += 1;
//!         Ok(())
//!     }
//!     fn merge(&self, acc: &mut (f64, u64), other: &(f64, u64)) {
//!         acc.0 += other.0;
//!         acc.1 += other.1;
//!     }
//!     fn finish(&self, acc: &(f64, u64), _window: &Window, out: &mut RowWriter) {
//!         out.float(acc.0 / acc.1 as f64).int(acc.1 as i64);
//!     }
//! }
//!
//! export_aggregate!(Average);
//! ```

mod config;
mod data;
mod state;

pub use config::{Config, ConfigValue};
pub use data::{
    Batch, Column, ColumnBuilder, DictColumn, Field, FieldType, Row, RowWriter, Spec, Value, Window,
};
pub use state::{decode, State};

#[cfg(any(feature = "transform", feature = "aggregate"))]
mod convert;

/// Sends a panic's message and place to the host before the plugin aborts (plugins build with
/// `panic = "abort"`, and a trap carries no message). Installed at `init`, before any plugin code runs.
#[cfg(any(feature = "transform", feature = "aggregate"))]
#[doc(hidden)]
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        bindings::host::panicked(&format!("{message}{place}"));
    }));
}

/// Log lines for the run's log (stderr), shown with the stage's name: `log::info("loaded 12 rules")`.
/// The host shows at most 20 lines a second per stage and counts what it drops, so logging per record
/// is safe but mostly unseen. In native builds (unit tests) the lines go to stderr directly.
pub mod log {
    #[cfg(all(
        target_arch = "wasm32",
        any(feature = "transform", feature = "aggregate")
    ))]
    fn emit(level: crate::bindings::host::Level, message: &str) {
        crate::bindings::host::log(level, message);
    }

    macro_rules! level {
        ($(#[$doc:meta] $name:ident => $level:ident),*) => {$(
            #[$doc]
            pub fn $name(message: impl AsRef<str>) {
                #[cfg(all(target_arch = "wasm32", any(feature = "transform", feature = "aggregate")))]
                emit(crate::bindings::host::Level::$level, message.as_ref());
                #[cfg(not(all(target_arch = "wasm32", any(feature = "transform", feature = "aggregate"))))]
                eprintln!("{}: {}", stringify!($name), message.as_ref());
            }
        )*};
    }

    level!(
        /// Something failed.
        error => Error,
        /// Something looks wrong.
        warn => Warn,
        /// Something worth knowing.
        info => Info,
        /// Detail for debugging a plugin.
        debug => Debug
    );
}

#[cfg(feature = "transform")]
pub mod transform;
#[cfg(feature = "transform")]
pub use transform::{Transform, Transformed};

#[cfg(feature = "aggregate")]
pub mod aggregate;
#[cfg(feature = "aggregate")]
pub use aggregate::{Aggregate, Finished, PaneColumns, Panes};

/// Bindings generated from the WIT package; plugins normally use the re-exports above instead.
#[cfg(feature = "transform")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_transform_bindings",
        default_bindings_module: "tributary_sdk::bindings",
    });
    pub use exports::tributary::plugin::transform as iface;
    pub use tributary::plugin::host;
    pub use tributary::plugin::types;
}

#[cfg(feature = "aggregate")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "aggregate-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_aggregate_bindings",
        default_bindings_module: "tributary_sdk::bindings",
    });
    pub use exports::tributary::plugin::aggregate as iface;
    pub use tributary::plugin::host;
    pub use tributary::plugin::types;
}

#[cfg(all(feature = "transform", feature = "aggregate"))]
compile_error!("tributary-sdk: enable exactly one of the `transform` and `aggregate` features. In a workspace with plugins of both kinds, cargo unifies the features of one build: build one plugin at a time, `cargo build --release -p NAME`");
