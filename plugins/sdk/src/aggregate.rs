//! Window-aggregate plugins: the accumulator logic only; the host owns windows, keys and state placement.

use crate::{Batch, Column, Config, Row, RowWriter, Spec, State, Window};

/// An aggregation in the shape of Flink's `AggregateFunction`: create, add, merge, finish.
///
/// An accumulator keyed by strings (the README's guide shows this example; a test keeps the two equal):
///
/// ```
/// use std::collections::BTreeMap;
/// use tributary_sdk::*;
///
/// // Per window and key: how many distinct artists, and the one with the most records.
/// pub struct Artists;
///
/// impl Aggregate for Artists {
///     type Acc = BTreeMap<String, u64>; // records per artist; maps are `State` too
///
///     fn init(config: &Config) -> Result<Self, String> {
///         config.only(&[])?;
///         Ok(Artists)
///     }
///     fn spec(&self) -> Spec {
///         Spec::new().input(Field::str("artist")).output(Field::int("artists")).output(Field::str("top_artist"))
///     }
///     fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
///         match acc.get_mut(row.str(0)) {
///             Some(n) => *n += 1,                            // no allocation for a known artist
///             None => _ = acc.insert(row.str(0).to_string(), 1),
///         }
///         Ok(())
///     }
///     fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
///         for (artist, n) in other {
///             *acc.entry(artist.clone()).or_default() += n;
///         }
///     }
///     fn finish(&self, acc: &Self::Acc, _window: &Window, out: &mut RowWriter) {
///         // Of artists with equal counts, the first by name: a BTreeMap iterates in key order.
///         let top = acc.iter().rev().max_by_key(|(_, n)| **n).map(|(artist, _)| artist);
///         out.int(acc.len() as i64);
///         match top {
///             Some(artist) => out.str(artist),
///             None => out.null(),
///         };
///     }
/// }
///
/// export_aggregate!(Artists);
/// # let artists = DictColumn { dict: vec!["Bo".into(), "Ann".into()], codes: vec![0, 1, 0, 1] };
/// # let mut acc = aggregate::Instance::new(Artists);
/// # acc.add(&[0, 0, 0, 0], &Batch { rows: 4, columns: vec![Column::Str(artists)] });
/// # let done = acc.finish(&[0]);
/// # assert_eq!(done.columns[0], Column::Int(vec![2]));
/// # let Column::Str(top) = &done.columns[1] else { panic!() };
/// # assert_eq!(top.dict, ["Ann"]);
/// # let state = acc.save(0);
/// # assert_eq!(decode::<BTreeMap<String, u64>>(&state).unwrap().len(), 2);
/// ```
pub trait Aggregate: Sized + 'static {
    /// The per-(window, key) accumulator; `Default` is the empty accumulator.
    type Acc: Default + State;
    /// Reads the stage's config table.
    fn init(config: &Config) -> Result<Self, String>;
    /// The fields read (passed as columns in this order) and the result fields written by `finish`.
    fn spec(&self) -> Spec;
    /// Folds one row into an accumulator; an error dead-letters the row and leaves `acc` as it was.
    fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String>;
    /// Folds `other` into `acc` (session windows merge this way).
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    /// Writes the results of one window and key: any number of rows (usually one; none leaves the
    /// window out), each one `out` call per declared output, in order ([`RowWriter::null`] for a null).
    /// `window` gives the window's bounds and key (a string key borrowed, see [`crate::Value`]).
    fn finish(&self, acc: &Self::Acc, window: &Window<'_>, out: &mut RowWriter);
}

/// What `finish` wrote for a list of slots.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// For each row, the index (in the list given to `finish`) of the slot it belongs to.
    pub rows: Vec<u32>,
    /// One column per declared output.
    pub columns: Vec<Column>,
    /// Per column, `None` if no value is null, else one flag per row (`false` for null).
    pub valid: Vec<Option<Vec<bool>>>,
}

/// The plugin value and its accumulator slots.
#[doc(hidden)]
pub struct Instance<T: Aggregate> {
    plugin: T,
    outputs: Vec<crate::Field>,
    slots: Vec<T::Acc>,
}

impl<T: Aggregate> Instance<T> {
    pub fn new(plugin: T) -> Self {
        let outputs = plugin.spec().outputs;
        Instance {
            plugin,
            outputs,
            slots: Vec::new(),
        }
    }

    fn slot(&mut self, slot: u32) -> &mut T::Acc {
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, T::Acc::default);
        }
        &mut self.slots[i]
    }

    /// Folds row i into `slots[i]`; returns the rows the plugin refused.
    pub fn add(&mut self, slots: &[u32], input: &Batch) -> Vec<(usize, String)> {
        let mut errors = Vec::new();
        if let Some(&max) = slots.iter().max() {
            self.slot(max);
        }
        for (i, &s) in slots.iter().enumerate() {
            let acc = &mut self.slots[s as usize];
            if let Err(reason) = self.plugin.add(acc, input.row(i)) {
                errors.push((i, reason));
            }
        }
        errors
    }

    pub fn merge(&mut self, dst: u32, src: u32) {
        self.slot(dst.max(src));
        let other = std::mem::take(&mut self.slots[src as usize]);
        self.plugin.merge(&mut self.slots[dst as usize], &other);
    }

    /// The results of `slots`, as if each were a window without bounds or key (for unit tests).
    pub fn finish(&mut self, slots: &[u32]) -> Finished {
        let panes: Vec<(u32, Window)> = slots.iter().map(|&s| (s, Window::default())).collect();
        self.finish_windows(&panes)
    }

    /// The results of each slot, given the window and key it holds.
    pub fn finish_windows(&mut self, panes: &[(u32, Window<'_>)]) -> Finished {
        let slots: Vec<u32> = panes.iter().map(|p| p.0).collect();
        self.finish_each(&slots, |i| panes[i].1)
    }

    /// The results of `slots`, pane i's window and key given by `window(i)`. The windows are not
    /// collected first: each borrows its key from wherever `window` reads it.
    pub fn finish_each<'a>(
        &mut self,
        slots: &[u32],
        window: impl Fn(usize) -> Window<'a>,
    ) -> Finished {
        if let Some(&max) = slots.iter().max() {
            self.slot(max);
        }
        // Most aggregates write a row per pane.
        let mut out = RowWriter::with_capacity(&self.outputs, slots.len());
        let mut rows = Vec::with_capacity(slots.len());
        for (i, &s) in slots.iter().enumerate() {
            let before = out.rows();
            self.plugin
                .finish(&self.slots[s as usize], &window(i), &mut out);
            rows.extend(std::iter::repeat_n(i as u32, out.rows() - before));
        }
        let (columns, valid) = out.finish_nullable();
        Finished {
            rows,
            columns,
            valid,
        }
    }

    pub fn save(&mut self, slot: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.slot(slot).save(&mut out);
        out
    }

    pub fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), String> {
        let acc = crate::state::decode::<T::Acc>(state)?;
        *self.slot(slot) = acc;
        Ok(())
    }

    pub fn free(&mut self, slots: &[u32]) {
        for &s in slots {
            if let Some(acc) = self.slots.get_mut(s as usize) {
                *acc = T::Acc::default();
            }
        }
    }
}

#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::iface;
    use crate::bindings::types as wit;
    use crate::convert;
    use std::cell::RefCell;

    type Slot<T> = &'static std::thread::LocalKey<RefCell<Option<Instance<T>>>>;

    fn with<T: Aggregate, R>(slot: Slot<T>, f: impl FnOnce(&mut Instance<T>) -> R) -> R {
        slot.with(|s| {
            f(s.borrow_mut()
                .as_mut()
                .expect("the host calls `init` first"))
        })
    }

    pub fn init<T: Aggregate>(
        slot: Slot<T>,
        config: Vec<(String, wit::ConfigValue)>,
    ) -> Result<wit::Spec, String> {
        crate::install_panic_hook();
        let plugin = T::init(&convert::config(config))?;
        let spec = convert::spec(plugin.spec());
        slot.with(|s| *s.borrow_mut() = Some(Instance::new(plugin)));
        Ok(spec)
    }
    pub fn add<T: Aggregate>(
        slot: Slot<T>,
        slots: Vec<u32>,
        input: wit::Batch,
    ) -> Vec<wit::RowError> {
        let input = convert::batch_in(input);
        convert::errors_out(with(slot, |i| i.add(&slots, &input)))
    }
    pub fn merge<T: Aggregate>(slot: Slot<T>, dst: u32, src: u32) {
        with(slot, |i| i.merge(dst, src))
    }
    pub fn finish<T: Aggregate>(slot: Slot<T>, panes: iface::Panes) -> iface::Finished {
        let iface::Panes {
            slots,
            bounds,
            keys,
        } = &panes;
        let key = |i: usize| convert::key_in(keys, i);
        let f = with(slot, |inst| match bounds {
            Some(b) => inst.finish_each(slots, |i| Window {
                start: Some(b.starts[i]),
                end: Some(b.ends[i]),
                key: key(i),
            }),
            None => inst.finish_each(slots, |i| Window {
                start: None,
                end: None,
                key: key(i),
            }),
        });
        iface::Finished {
            rows: f.rows,
            columns: convert::nullable_out(f.columns, f.valid),
        }
    }
    pub fn save<T: Aggregate>(slot: Slot<T>, s: u32) -> Vec<u8> {
        with(slot, |i| i.save(s))
    }
    pub fn load<T: Aggregate>(slot: Slot<T>, s: u32, state: Vec<u8>) -> Result<(), String> {
        with(slot, |i| i.load(s, &state))
    }
    pub fn free<T: Aggregate>(slot: Slot<T>, slots: Vec<u32>) {
        with(slot, |i| i.free(&slots))
    }
}

/// Exports an [`Aggregate`] implementation as the plugin's component interface.
#[macro_export]
macro_rules! export_aggregate {
    ($plugin:ty) => {
        // Exports exist only in the WebAssembly build; natively the crate is a plain library, so a
        // plugin's unit tests run with `cargo test`.
        #[cfg(target_arch = "wasm32")]
        mod __tributary_export {
            #[allow(unused_imports)]
            use super::*;
            thread_local! {
                static __TRIBUTARY_PLUGIN: ::std::cell::RefCell<Option<$crate::aggregate::Instance<$plugin>>> =
                    const { ::std::cell::RefCell::new(None) };
            }
            struct __TributaryAggregate;
            impl $crate::bindings::iface::Guest for __TributaryAggregate {
                fn init(
                    config: Vec<(String, $crate::bindings::types::ConfigValue)>,
                ) -> Result<$crate::bindings::types::Spec, String> {
                    $crate::aggregate::glue::init::<$plugin>(&__TRIBUTARY_PLUGIN, config)
                }
                fn add(
                    slots: Vec<u32>,
                    input: $crate::bindings::types::Batch,
                ) -> Vec<$crate::bindings::types::RowError> {
                    $crate::aggregate::glue::add::<$plugin>(&__TRIBUTARY_PLUGIN, slots, input)
                }
                fn merge(dst: u32, src: u32) {
                    $crate::aggregate::glue::merge::<$plugin>(&__TRIBUTARY_PLUGIN, dst, src)
                }
                fn finish(
                    panes: $crate::bindings::iface::Panes,
                ) -> $crate::bindings::iface::Finished {
                    $crate::aggregate::glue::finish::<$plugin>(&__TRIBUTARY_PLUGIN, panes)
                }
                fn save(slot: u32) -> Vec<u8> {
                    $crate::aggregate::glue::save::<$plugin>(&__TRIBUTARY_PLUGIN, slot)
                }
                fn load(slot: u32, state: Vec<u8>) -> Result<(), String> {
                    $crate::aggregate::glue::load::<$plugin>(&__TRIBUTARY_PLUGIN, slot, state)
                }
                fn free(slots: Vec<u32>) {
                    $crate::aggregate::glue::free::<$plugin>(&__TRIBUTARY_PLUGIN, slots)
                }
            }
            $crate::bindings::__export_aggregate_bindings!(__TributaryAggregate with_types_in $crate::bindings);
        }
    };
}
