//! Transform plugins: a batch in, a batch out.

use crate::{Batch, Column, Config, Spec};

/// What [`Transform::apply`] returns for a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Transformed {
    /// For each output row, the input row it comes from; `None` keeps every input row in order.
    pub rows: Option<Vec<u32>>,
    /// The declared output fields, one value per output row.
    pub columns: Vec<Column>,
    /// Input rows that failed, with the reason; the host dead-letters them.
    pub errors: Vec<(usize, String)>,
}

impl Transformed {
    /// One output row per input row (a map).
    pub fn map(columns: Vec<Column>) -> Self {
        Transformed {
            rows: None,
            columns,
            errors: Vec::new(),
        }
    }
    /// The input rows listed in `rows`, in that order (a filter or flat-map).
    pub fn select(rows: Vec<u32>, columns: Vec<Column>) -> Self {
        Transformed {
            rows: Some(rows),
            columns,
            errors: Vec::new(),
        }
    }
    pub fn with_errors(mut self, errors: Vec<(usize, String)>) -> Self {
        self.errors = errors;
        self
    }
}

/// A transform plugin. One value of it lives in the plugin instance for the life of the stage.
pub trait Transform: Sized + 'static {
    /// Reads the stage's config table.
    fn init(config: &Config) -> Result<Self, String>;
    /// The fields read (passed as columns in this order) and written.
    fn spec(&self) -> Spec;
    /// Transforms one batch of the declared input columns.
    fn apply(&mut self, input: &Batch) -> Transformed;
}

#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::iface;
    use crate::bindings::types as wit;
    use crate::convert;
    use std::cell::RefCell;

    pub fn init<T: Transform>(
        slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
        config: Vec<(String, wit::ConfigValue)>,
    ) -> Result<wit::Spec, String> {
        crate::install_panic_hook();
        let plugin = T::init(&convert::config(config))?;
        let spec = convert::spec(plugin.spec());
        slot.with(|s| *s.borrow_mut() = Some(plugin));
        Ok(spec)
    }

    pub fn apply<T: Transform>(
        slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
        input: wit::Batch,
    ) -> iface::Transformed {
        let input = convert::batch_in(input);
        let out = slot.with(|s| {
            let mut s = s.borrow_mut();
            s.as_mut()
                .expect("the host calls `init` before `apply`")
                .apply(&input)
        });
        iface::Transformed {
            rows: out.rows,
            columns: out.columns.into_iter().map(convert::column_out).collect(),
            errors: convert::errors_out(out.errors),
        }
    }
}

/// Exports a [`Transform`] implementation as the plugin's component interface.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        // Exports exist only in the WebAssembly build; natively the crate is a plain library, so a
        // plugin's unit tests run with `cargo test`.
        #[cfg(target_arch = "wasm32")]
        mod __tributary_export {
            #[allow(unused_imports)]
            use super::*;
            thread_local! {
                static __TRIBUTARY_PLUGIN: ::std::cell::RefCell<Option<$plugin>> = const { ::std::cell::RefCell::new(None) };
            }
            struct __TributaryTransform;
            impl $crate::bindings::iface::Guest for __TributaryTransform {
                fn init(
                    config: Vec<(String, $crate::bindings::types::ConfigValue)>,
                ) -> Result<$crate::bindings::types::Spec, String> {
                    $crate::transform::glue::init::<$plugin>(&__TRIBUTARY_PLUGIN, config)
                }
                fn apply(input: $crate::bindings::types::Batch) -> $crate::bindings::iface::Transformed {
                    $crate::transform::glue::apply::<$plugin>(&__TRIBUTARY_PLUGIN, input)
                }
            }
            $crate::bindings::__export_transform_bindings!(__TributaryTransform with_types_in $crate::bindings);
        }
    };
}
