//! Transform plugins: a batch in, a batch out; fields renamed or removed; rows added at the end.

use crate::{Batch, Column, Config, RowWriter, Spec};

/// What [`Transform::apply`] returns for a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Transformed {
    /// For each output row, the input row it comes from; `None` keeps every input row in order.
    pub rows: Option<Vec<u32>>,
    /// The declared output fields, one value per output row.
    pub columns: Vec<Column>,
    /// Per column, `None` if no value is null, else one flag per output row (`false` for null); an
    /// empty list means no nulls at all.
    pub valid: Vec<Option<Vec<bool>>>,
    /// Input rows that failed, with the reason; the host dead-letters them.
    pub errors: Vec<(usize, String)>,
}

impl Transformed {
    /// One output row per input row (a map).
    pub fn map(columns: Vec<Column>) -> Self {
        Transformed {
            columns,
            ..Default::default()
        }
    }
    /// The input rows listed in `rows`, in that order (a filter or flat-map).
    pub fn select(rows: Vec<u32>, columns: Vec<Column>) -> Self {
        Transformed {
            rows: Some(rows),
            columns,
            ..Default::default()
        }
    }
    /// A map whose outputs were written row by row, nulls included ([`RowWriter::null`]).
    pub fn map_rows(out: RowWriter) -> Self {
        let (columns, valid) = out.finish_nullable();
        Transformed {
            columns,
            valid,
            ..Default::default()
        }
    }
    /// [`Transformed::select`] with outputs written row by row, one row per entry of `rows`.
    pub fn select_rows(rows: Vec<u32>, out: RowWriter) -> Self {
        Transformed {
            rows: Some(rows),
            ..Transformed::map_rows(out)
        }
    }
    pub fn with_errors(mut self, errors: Vec<(usize, String)>) -> Self {
        self.errors = errors;
        self
    }
}

/// A transform plugin. One value of it lives in the plugin instance for the life of the stage.
///
/// A flat-map that also renames a field (the README's guide shows this example; a test keeps the two
/// equal):
///
/// ```
/// use tributary_sdk::*;
///
/// // One record per performer: `artist = "Ann & Bo"` becomes two records, `performer = "Ann"` and
/// // `performer = "Bo"`, each with the record's other fields, and without `artist`.
/// pub struct Performers;
///
/// impl Transform for Performers {
///     fn init(config: &Config) -> Result<Self, String> {
///         config.only(&[])?;
///         Ok(Performers)
///     }
///     fn spec(&self) -> Spec {
///         // Reads `artist`, writes `performer` and drops `artist`: a rename.
///         Spec::new().input(Field::str("artist")).output(Field::str("performer")).drop("artist")
///     }
///     fn apply(&mut self, input: &Batch) -> Transformed {
///         let mut rows = Vec::new(); // for each output row, the input row it comes from
///         let mut out = RowWriter::new(&self.spec().outputs);
///         for r in 0..input.rows {
///             for name in input.row(r).str(0).split(" & ") {
///                 rows.push(r as u32); // listed twice: two records; left out: filtered out
///                 out.str(name.trim());
///             }
///         }
///         Transformed::select_rows(rows, out)
///     }
/// }
///
/// export_transform!(Performers);
/// # let artists = DictColumn { dict: vec!["Ann & Bo".into(), "Cy".into()], codes: vec![0, 1] };
/// # let out = Performers.apply(&Batch { rows: 2, columns: vec![Column::Str(artists)] });
/// # assert_eq!(out.rows, Some(vec![0, 0, 1]));
/// # let Column::Str(names) = &out.columns[0] else { panic!() };
/// # assert_eq!(names.dict, ["Ann", "Bo", "Cy"]);
/// # assert_eq!(Performers.spec().drops, ["artist"]);
/// ```
pub trait Transform: Sized + 'static {
    /// Reads the stage's config table.
    fn init(config: &Config) -> Result<Self, String>;
    /// The fields read (passed as columns in this order), written, and removed ([`Spec::drop`]).
    fn spec(&self) -> Spec;
    /// Transforms one batch of the declared input columns.
    fn apply(&mut self, input: &Batch) -> Transformed;
    /// Called once when the input has ended: rows the plugin held back (a buffer, a count), one `out`
    /// call per declared output each, in order. These rows hold only the outputs. The default adds
    /// none. Not called when the run is stopped, and not checkpointed: state that must survive a
    /// restart belongs in a window stage.
    fn finish(&mut self, out: &mut RowWriter) {
        let _ = out;
    }
}

#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::iface;
    use crate::bindings::types as wit;
    use crate::convert;
    use std::cell::RefCell;

    type Slot<T> = &'static std::thread::LocalKey<RefCell<Option<T>>>;

    fn with<T: Transform, R>(slot: Slot<T>, f: impl FnOnce(&mut T) -> R) -> R {
        slot.with(|s| {
            f(s.borrow_mut()
                .as_mut()
                .expect("the host calls `init` first"))
        })
    }

    pub fn init<T: Transform>(
        slot: Slot<T>,
        config: Vec<(String, wit::ConfigValue)>,
    ) -> Result<iface::TransformSpec, String> {
        crate::install_panic_hook();
        let plugin = T::init(&convert::config(config))?;
        let spec = convert::transform_spec(plugin.spec());
        slot.with(|s| *s.borrow_mut() = Some(plugin));
        Ok(spec)
    }

    pub fn apply<T: Transform>(slot: Slot<T>, input: wit::Batch) -> iface::Transformed {
        let input = convert::batch_in(input);
        let out = with(slot, |p| p.apply(&input));
        iface::Transformed {
            rows: out.rows,
            columns: convert::nullable_out(out.columns, out.valid),
            errors: convert::errors_out(out.errors),
        }
    }

    pub fn finish<T: Transform>(slot: Slot<T>) -> iface::Flushed {
        let (rows, columns, valid) = with(slot, |p| {
            let mut out = RowWriter::new(&p.spec().outputs);
            p.finish(&mut out);
            let rows = out.rows();
            let (columns, valid) = out.finish_nullable();
            (rows, columns, valid)
        });
        iface::Flushed {
            rows: rows as u32,
            columns: convert::nullable_out(columns, valid),
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
                ) -> Result<$crate::bindings::iface::TransformSpec, String> {
                    $crate::transform::glue::init::<$plugin>(&__TRIBUTARY_PLUGIN, config)
                }
                fn apply(input: $crate::bindings::types::Batch) -> $crate::bindings::iface::Transformed {
                    $crate::transform::glue::apply::<$plugin>(&__TRIBUTARY_PLUGIN, input)
                }
                fn finish() -> $crate::bindings::iface::Flushed {
                    $crate::transform::glue::finish::<$plugin>(&__TRIBUTARY_PLUGIN)
                }
            }
            $crate::bindings::__export_transform_bindings!(__TributaryTransform with_types_in $crate::bindings);
        }
    };
}
