//! Window-aggregate plugins: the accumulator logic only; the host owns windows, keys and state placement.

use crate::data::wrote_wrong_type;
use crate::{
    Batch, Column, ColumnBuilder, Config, Field, Row, RowWriter, Spec, State, Value, Window,
};

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

    /// Writes the results of all the panes of a call at once, column by column: for an aggregate
    /// that writes exactly one row per pane and no nulls. Returns `false` (the default, which writes
    /// nothing) to have the SDK call [`Aggregate::finish`] once per pane instead.
    ///
    /// Worth writing when `finish` is a few instructions, as `average`'s division: a loop over the
    /// panes per column compiles to tight code, where a call of `finish` per pane pays for the call
    /// and for `RowWriter`'s per-field bookkeeping (in a WASM build, whose functions wasmtime compiles
    /// one by one, several times over). Each column must get one value per pane, in pane order: the
    /// SDK checks, and a mismatch is a panic that names the column. Results must equal `finish`'s,
    /// which stays the reference: [`assert_batch_hooks_agree`] compares them in a plugin's tests.
    ///
    /// ```
    /// # use tributary_sdk::*;
    /// # struct Average;
    /// # impl Aggregate for Average {
    /// #     type Acc = (f64, u64);
    /// #     fn init(_: &Config) -> Result<Self, String> { Ok(Average) }
    /// #     fn spec(&self) -> Spec {
    /// #         Spec::new().input(Field::float("x")).output(Field::float("avg")).output(Field::int("count"))
    /// #     }
    /// #     fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
    /// #         acc.0 += row.float(0);
    /// #         acc.1 += 1;
    /// #         Ok(())
    /// #     }
    /// #     fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {}
    /// fn finish(&self, acc: &Self::Acc, _window: &Window, out: &mut RowWriter) {
    ///     out.float(acc.0 / acc.1 as f64).int(acc.1 as i64);
    /// }
    /// fn finish_panes(&self, panes: &Panes<'_, Self::Acc>, out: &mut PaneColumns) -> bool {
    ///     out.floats(0).extend(panes.accs().map(|(sum, n)| sum / *n as f64));
    ///     out.ints(1).extend(panes.accs().map(|(_, n)| *n as i64));
    ///     true
    /// }
    /// # }
    /// # let mut agg = aggregate::Instance::new(Average);
    /// # agg.add(&[0, 1, 0], &Batch { rows: 3, columns: vec![Column::Float(vec![1.0, 5.0, 2.0])] });
    /// # let done = agg.finish(&[1, 0]);
    /// # assert_eq!(done.columns, [Column::Float(vec![5.0, 1.5]), Column::Int(vec![1, 2])]);
    /// # assert_eq!(done.rows, [0, 1]);
    /// ```
    fn finish_panes(&self, panes: &Panes<'_, Self::Acc>, out: &mut PaneColumns) -> bool {
        let _ = (panes, out);
        false
    }

    /// Folds a whole batch at once, row i into `accs[slots[i]]` (every slot is in range), for an
    /// aggregate whose `add` never fails. Returns `false` (the default, which changes nothing) to have
    /// the SDK call [`Aggregate::add`] once per row instead.
    ///
    /// The counterpart of [`Aggregate::finish_panes`] for `add`: worth writing when `add` is a few
    /// instructions, as `average`'s sum and count (`input.floats(0)` read once, not per row). It cannot
    /// refuse a row: an aggregate that dead-letters rows keeps `add`. Results must equal `add`'s, which
    /// stays the reference ([`assert_batch_hooks_agree`] compares them in a plugin's tests).
    fn add_rows(&self, accs: &mut [Self::Acc], slots: &[u32], input: &Batch) -> bool {
        let _ = (accs, slots, input);
        false
    }
}

/// The panes of one `finish` call, for [`Aggregate::finish_panes`]: pane i's accumulator and window.
pub struct Panes<'a, A> {
    accs: &'a [A],
    slots: &'a [u32],
    window: &'a dyn WindowOf<'a>,
}

impl<'a, A> Panes<'a, A> {
    /// How many panes: each column gets this many values.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Pane i's accumulator.
    #[inline]
    pub fn acc(&self, i: usize) -> &'a A {
        &self.accs[self.slots[i] as usize]
    }
    /// The panes' accumulators, in pane order.
    #[inline]
    pub fn accs(&self) -> impl ExactSizeIterator<Item = &'a A> + '_ {
        self.slots.iter().map(|&s| &self.accs[s as usize])
    }
    /// Pane i's window bounds and key, as [`Aggregate::finish`] gets them.
    pub fn window(&self, i: usize) -> Window<'a> {
        self.window.window(i)
    }
}

/// What [`Aggregate::finish_panes`] writes: per declared output, in declared order, one value per pane.
pub struct PaneColumns {
    /// Empty until written (`extend` sizes a column once), so a plugin without the hook allocates none.
    columns: Vec<ColumnBuilder>,
}

impl PaneColumns {
    fn new(outputs: &[Field]) -> Self {
        PaneColumns {
            columns: outputs.iter().map(|f| ColumnBuilder::new(f.ty)).collect(),
        }
    }

    /// Output `col`, declared `float`.
    #[inline]
    pub fn floats(&mut self, col: usize) -> &mut Vec<f64> {
        match &mut self.columns[col] {
            ColumnBuilder::Float(v) => v,
            other => wrote_wrong_type(other, "floats"),
        }
    }
    /// Output `col`, declared `int`.
    #[inline]
    pub fn ints(&mut self, col: usize) -> &mut Vec<i64> {
        match &mut self.columns[col] {
            ColumnBuilder::Int(v) => v,
            other => wrote_wrong_type(other, "ints"),
        }
    }
    /// Output `col`, declared `boolean`.
    #[inline]
    pub fn booleans(&mut self, col: usize) -> &mut Vec<bool> {
        match &mut self.columns[col] {
            ColumnBuilder::Boolean(v) => v,
            other => wrote_wrong_type(other, "booleans"),
        }
    }
    /// Appends the next pane's value to output `col`, declared `str`.
    pub fn str(&mut self, col: usize, value: &str) -> &mut Self {
        self.columns[col].push_str(value);
        self
    }

    /// The columns, each checked to hold one value per pane.
    fn finish(self, outputs: &[Field], panes: usize) -> Vec<Column> {
        for (c, field) in self.columns.iter().zip(outputs) {
            if c.len() != panes {
                wrong_length(&field.name, c.len(), panes);
            }
        }
        self.columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect()
    }
}

#[cold]
#[inline(never)]
fn wrong_length(name: &str, values: usize, panes: usize) -> ! {
    panic!("`finish_panes` wrote {values} values of output `{name}` for {panes} panes: write one per pane")
}

/// Pane i's window, with its key borrowed for `'w`: implemented by the window functions `finish_each`
/// takes, whose keys outlive the `Panes` that borrows them.
trait WindowOf<'w> {
    fn window(&self, i: usize) -> Window<'w>;
}

impl<'w, 'a: 'w, F: Fn(usize) -> Window<'a>> WindowOf<'w> for F {
    #[inline]
    fn window(&self, i: usize) -> Window<'w> {
        self(i)
    }
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
        if let Some(&max) = slots.iter().max() {
            self.slot(max);
        }
        if self.plugin.add_rows(&mut self.slots, slots, input) {
            return Vec::new();
        }
        self.add_by_row(slots, input)
    }

    /// Folds row i into `slots[i]` by [`Aggregate::add`] alone, never by [`Aggregate::add_rows`]:
    /// what the latter must equal, for a plugin's tests. Returns the rows the plugin refused.
    pub fn add_by_row(&mut self, slots: &[u32], input: &Batch) -> Vec<(usize, String)> {
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
        let panes = Panes {
            accs: &self.slots,
            slots,
            window: &window,
        };
        let mut columns = PaneColumns::new(&self.outputs);
        if self.plugin.finish_panes(&panes, &mut columns) {
            let n = slots.len();
            return Finished {
                rows: (0..n as u32).collect(),
                columns: columns.finish(&self.outputs, n),
                valid: vec![None; self.outputs.len()],
            };
        }
        if columns.columns.iter().any(|c| c.len() != 0) {
            panic!("`finish_panes` wrote values and returned false: return true, or write nothing");
        }
        finish_by_pane(&self.plugin, &self.outputs, &panes)
    }

    /// The results of `slots` written by [`Aggregate::finish`] pane by pane, never by
    /// [`Aggregate::finish_panes`]: what the latter must equal, for a plugin's tests.
    pub fn finish_by_pane(&mut self, slots: &[u32]) -> Finished {
        if let Some(&max) = slots.iter().max() {
            self.slot(max);
        }
        let window = |_| Window::default();
        let panes = Panes {
            accs: &self.slots,
            slots,
            window: &window,
        };
        finish_by_pane(&self.plugin, &self.outputs, &panes)
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

/// For a plugin's tests: the results of `input` through the batch hooks ([`Aggregate::add_rows`],
/// [`Aggregate::finish_panes`]) on one instance of `make()`, and row by row and pane by pane on
/// another; panics with both if they differ (compared as debug text, so a NaN equals itself). The rows
/// go to four slots in turn, slot 3 is merged into slot 2, and the panes read are slots 3 (empty since
/// the merge), 1, 0, 2 and 1 again.
pub fn assert_batch_hooks_agree<T: Aggregate>(make: impl Fn() -> T, input: &Batch) {
    let slots: Vec<u32> = (0..input.rows as u32).map(|i| i % 4).collect();
    let panes = [3, 1, 0, 2, 1];
    let (mut hooks, mut by_row) = (Instance::new(make()), Instance::new(make()));
    let (errors, expected_errors) = (hooks.add(&slots, input), by_row.add_by_row(&slots, input));
    assert_eq!(errors, expected_errors, "rows refused");
    hooks.merge(2, 3);
    by_row.merge(2, 3);
    let (done, expected) = (hooks.finish(&panes), by_row.finish_by_pane(&panes));
    assert_eq!(
        format!("{done:?}"),
        format!("{expected:?}"),
        "results through the batch hooks (left) and row by row (right)"
    );
}

/// The results of `panes`, one `finish` call per pane.
fn finish_by_pane<T: Aggregate>(
    plugin: &T,
    outputs: &[Field],
    panes: &Panes<'_, T::Acc>,
) -> Finished {
    // Most aggregates write a row per pane.
    let mut out = RowWriter::with_capacity(outputs, panes.len());
    let mut rows = Vec::with_capacity(panes.len());
    for i in 0..panes.len() {
        let before = out.rows();
        plugin.finish(panes.acc(i), &panes.window(i), &mut out);
        rows.extend(std::iter::repeat_n(i as u32, out.rows() - before));
    }
    let (columns, valid) = out.finish_nullable();
    Finished {
        rows,
        columns,
        valid,
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
        use iface::{KeyColumn, KeyValues, Keys};
        let iface::Panes {
            slots,
            bounds,
            keys,
        } = &panes;
        // The keys' kind is matched once per call, not once per pane: in a WASM build the per-pane
        // loop is then one small function with the lookup inlined (`perf` of the bench found the
        // general lookup a call of its own, a fifth of `finish`). A key is read only when its window
        // is asked for, which `finish_panes` may never do.
        let f = with(slot, |inst| match keys {
            Keys::AllNull => finish_in(inst, slots, bounds, |_| None),
            Keys::Column(KeyColumn {
                values: KeyValues::Str(d),
                valid: None,
            }) => {
                let (text, offsets) = (&d.dict.text, &d.dict.offsets);
                finish_in(inst, slots, bounds, |i| {
                    let code = d.codes[i] as usize;
                    let (from, to) = (offsets[code] as usize, offsets[code + 1] as usize);
                    Some(Value::Str(&text[from..to]))
                })
            }
            Keys::Column(KeyColumn {
                values: KeyValues::Int(v),
                valid: None,
            }) => finish_in(inst, slots, bounds, |i| Some(Value::Int(v[i]))),
            _ => finish_in(inst, slots, bounds, |i| convert::key_in(keys, i)),
        });
        iface::Finished {
            rows: f.rows,
            columns: convert::nullable_out(f.columns, f.valid),
        }
    }

    /// `finish_each` with each pane's window read from the call's bounds and `key`.
    #[inline(always)]
    fn finish_in<'a, T: Aggregate>(
        inst: &mut Instance<T>,
        slots: &[u32],
        bounds: &Option<iface::Bounds>,
        key: impl Fn(usize) -> Option<Value<'a>>,
    ) -> Finished {
        match bounds {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts rows, by 1 in `add` and by 10 in `add_rows` when `by_batch` (so a test sees which ran);
    /// `finish_panes` writes `written` values of its one output and answers `answer`.
    struct Count {
        by_batch: bool,
        written: usize,
        answer: bool,
    }

    impl Aggregate for Count {
        type Acc = u64;
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Count {
                by_batch: false,
                written: 0,
                answer: false,
            })
        }
        fn spec(&self) -> Spec {
            Spec::new().output(Field::int("n"))
        }
        fn add(&self, acc: &mut u64, _: Row<'_>) -> Result<(), String> {
            *acc += 1;
            Ok(())
        }
        fn add_rows(&self, accs: &mut [u64], slots: &[u32], _: &Batch) -> bool {
            if self.by_batch {
                for &s in slots {
                    accs[s as usize] += 10;
                }
            }
            self.by_batch
        }
        fn merge(&self, acc: &mut u64, other: &u64) {
            *acc += other;
        }
        fn finish(&self, acc: &u64, window: &Window<'_>, out: &mut RowWriter) {
            // A row per record, and none for an empty slot: `finish_by_pane` keeps both.
            for _ in 0..*acc {
                out.int(window.start.unwrap_or(-1));
            }
        }
        fn finish_panes(&self, panes: &Panes<'_, u64>, out: &mut PaneColumns) -> bool {
            let n = self.written;
            out.ints(0)
                .extend(panes.accs().take(n).map(|&acc| acc as i64));
            self.answer
        }
    }

    fn counted(written: usize, answer: bool) -> Instance<Count> {
        let mut agg = Instance::new(Count {
            by_batch: false,
            written,
            answer,
        });
        let batch = Batch {
            rows: 3,
            columns: vec![],
        };
        agg.add(&[0, 2, 2], &batch);
        agg
    }

    #[test]
    fn finish_panes_results_are_one_row_per_pane_in_pane_order() {
        let done = counted(3, true).finish(&[2, 1, 0]);
        assert_eq!(done.rows, [0, 1, 2]);
        assert_eq!(done.columns, [Column::Int(vec![2, 0, 1])]);
        assert_eq!(done.valid, [None]);
    }

    #[test]
    fn without_finish_panes_finish_is_called_per_pane_with_its_window() {
        let mut agg = counted(0, false);
        let done = agg.finish_windows(&[
            (
                2,
                Window {
                    start: Some(7),
                    ..Window::default()
                },
            ),
            (1, Window::default()),
            (0, Window::default()),
        ]);
        assert_eq!(done.rows, [0, 0, 2]);
        assert_eq!(done.columns, [Column::Int(vec![7, 7, -1])]);
        assert_eq!(
            agg.finish_by_pane(&[2]).columns,
            [Column::Int(vec![-1, -1])]
        );
    }

    #[test]
    fn add_rows_folds_the_batch_when_it_says_so_and_add_by_row_never_uses_it() {
        let batch = Batch {
            rows: 3,
            columns: vec![],
        };
        let mut agg = Instance::new(Count {
            by_batch: true,
            written: 0,
            answer: false,
        });
        assert!(agg.add(&[0, 1, 1], &batch).is_empty());
        assert!(agg.add_by_row(&[0, 1, 1], &batch).is_empty());
        assert_eq!(agg.finish_by_pane(&[0]).rows.len(), 11);
        assert_eq!(agg.finish_by_pane(&[1]).rows.len(), 22);
    }

    #[test]
    #[should_panic(expected = "results through the batch hooks (left) and row by row (right)")]
    fn batch_hooks_that_differ_from_add_fail_the_check() {
        let batch = Batch {
            rows: 5,
            columns: vec![],
        };
        let make = || Count {
            by_batch: true,
            written: 0,
            answer: false,
        };
        assert_batch_hooks_agree(make, &batch);
    }

    #[test]
    #[should_panic(expected = "`finish_panes` wrote 2 values of output `n` for 3 panes")]
    fn finish_panes_must_write_a_value_per_pane() {
        counted(2, true).finish(&[2, 1, 0]);
    }

    #[test]
    #[should_panic(expected = "`finish_panes` wrote values and returned false")]
    fn finish_panes_that_wrote_must_say_so() {
        counted(1, false).finish(&[2, 1, 0]);
    }

    #[test]
    #[should_panic(expected = "wrote floats")]
    fn finish_panes_columns_have_their_declared_types() {
        let mut out = PaneColumns::new(&[Field::int("n")]);
        out.floats(0);
    }
}
