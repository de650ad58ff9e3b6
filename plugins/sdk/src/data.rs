//! The SDK's view of the ABI's data: plain Rust types that mirror `tributary.wit`, so plugin code and its
//! native unit tests never touch generated bindings.

/// The type a plugin wants a field in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Int,
    Str,
    Boolean,
}

/// A field a plugin reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        Field {
            name: name.into(),
            ty,
        }
    }
    pub fn float(name: impl Into<String>) -> Self {
        Self::new(name, FieldType::Float)
    }
    pub fn int(name: impl Into<String>) -> Self {
        Self::new(name, FieldType::Int)
    }
    pub fn str(name: impl Into<String>) -> Self {
        Self::new(name, FieldType::Str)
    }
    pub fn boolean(name: impl Into<String>) -> Self {
        Self::new(name, FieldType::Boolean)
    }
}

/// What a plugin reads (`inputs`, passed as columns in this order) and writes (`outputs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    pub inputs: Vec<Field>,
    pub outputs: Vec<Field>,
    /// Input fields a transform removes from its output rows (an aggregate's results hold only its
    /// outputs, so an aggregate drops nothing).
    pub drops: Vec<String>,
}

impl Spec {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn input(mut self, field: Field) -> Self {
        self.inputs.push(field);
        self
    }
    pub fn output(mut self, field: Field) -> Self {
        self.outputs.push(field);
        self
    }
    /// Removes a field from the transform's output rows: with [`Spec::input`] of the old name and
    /// [`Spec::output`] of the new one, a rename.
    pub fn drop(mut self, name: &str) -> Self {
        self.drops.push(name.to_string());
        self
    }
}

/// Strings as a dictionary plus one code per row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DictColumn {
    pub dict: Vec<String>,
    pub codes: Vec<u32>,
}

impl DictColumn {
    #[inline]
    pub fn get(&self, row: usize) -> &str {
        &self.dict[self.codes[row] as usize]
    }
}

/// One column of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Str(DictColumn),
    Boolean(Vec<bool>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Float(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Str(d) => d.codes.len(),
            Column::Boolean(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of rows holding the plugin's declared input fields, one column each, in declared order.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub columns: Vec<Column>,
}

// The host converts every column to the declared type before the call, so a mismatch here is a host bug;
// panicking traps the plugin and the host reports it, which is the right outcome for a broken contract.
//
// The accessors are `#[inline]` with their panics out of line: a plugin reads a cell per row through
// them, and in a WASM build every call not inlined is a call in the sandbox (wasmtime does not inline).
impl Batch {
    #[inline]
    pub fn floats(&self, col: usize) -> &[f64] {
        match &self.columns[col] {
            Column::Float(v) => v,
            other => not_of_type(col, "float", other),
        }
    }
    #[inline]
    pub fn ints(&self, col: usize) -> &[i64] {
        match &self.columns[col] {
            Column::Int(v) => v,
            other => not_of_type(col, "int", other),
        }
    }
    #[inline]
    pub fn strs(&self, col: usize) -> &DictColumn {
        match &self.columns[col] {
            Column::Str(d) => d,
            other => not_of_type(col, "str", other),
        }
    }
    #[inline]
    pub fn booleans(&self, col: usize) -> &[bool] {
        match &self.columns[col] {
            Column::Boolean(v) => v,
            other => not_of_type(col, "boolean", other),
        }
    }
    #[inline]
    pub fn row(&self, row: usize) -> Row<'_> {
        Row { batch: self, row }
    }
}

#[cold]
#[inline(never)]
fn not_of_type(col: usize, ty: &str, column: &Column) -> ! {
    panic!("column {col} is not {ty}: {column:?}")
}

/// One row of a [`Batch`]; columns are addressed by their position in the plugin's `Spec::inputs`.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    batch: &'a Batch,
    row: usize,
}

impl<'a> Row<'a> {
    #[inline]
    pub fn index(&self) -> usize {
        self.row
    }
    #[inline]
    pub fn float(&self, col: usize) -> f64 {
        self.batch.floats(col)[self.row]
    }
    #[inline]
    pub fn int(&self, col: usize) -> i64 {
        self.batch.ints(col)[self.row]
    }
    #[inline]
    pub fn str(&self, col: usize) -> &'a str {
        self.batch.strs(col).get(self.row)
    }
    #[inline]
    pub fn boolean(&self, col: usize) -> bool {
        self.batch.booleans(col)[self.row]
    }
}

/// Builds one output column.
#[derive(Debug)]
pub enum ColumnBuilder {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Str(DictColumn, std::collections::HashMap<String, u32>),
    Boolean(Vec<bool>),
}

impl ColumnBuilder {
    pub fn new(ty: FieldType) -> Self {
        Self::with_capacity(ty, 0)
    }
    /// A builder with room for `rows` values before it grows.
    pub fn with_capacity(ty: FieldType, rows: usize) -> Self {
        match ty {
            FieldType::Float => ColumnBuilder::Float(Vec::with_capacity(rows)),
            FieldType::Int => ColumnBuilder::Int(Vec::with_capacity(rows)),
            FieldType::Str => ColumnBuilder::Str(
                DictColumn {
                    dict: Vec::new(),
                    codes: Vec::with_capacity(rows),
                },
                Default::default(),
            ),
            FieldType::Boolean => ColumnBuilder::Boolean(Vec::with_capacity(rows)),
        }
    }
    pub fn finish(self) -> Column {
        match self {
            ColumnBuilder::Float(v) => Column::Float(v),
            ColumnBuilder::Int(v) => Column::Int(v),
            ColumnBuilder::Str(d, _) => Column::Str(d),
            ColumnBuilder::Boolean(v) => Column::Boolean(v),
        }
    }
}

impl ColumnBuilder {
    pub(crate) fn len(&self) -> usize {
        match self {
            ColumnBuilder::Float(v) => v.len(),
            ColumnBuilder::Int(v) => v.len(),
            ColumnBuilder::Str(d, _) => d.codes.len(),
            ColumnBuilder::Boolean(v) => v.len(),
        }
    }

    /// A float written to a column not declared `float`: converted to an int column, else a plugin bug.
    #[cold]
    #[inline(never)]
    fn push_float(&mut self, v: f64) {
        match self {
            ColumnBuilder::Float(c) => c.push(v),
            ColumnBuilder::Int(c) => c.push(v as i64),
            other => wrote_wrong_type(other, "a float"),
        }
    }

    /// An int written to a column not declared `int`: converted to a float column, else a plugin bug.
    #[cold]
    #[inline(never)]
    fn push_int(&mut self, v: i64) {
        match self {
            ColumnBuilder::Int(c) => c.push(v),
            ColumnBuilder::Float(c) => c.push(v as f64),
            other => wrote_wrong_type(other, "an int"),
        }
    }

    /// Appends a string to a `str` column: its code, and the string to the dictionary when new.
    pub(crate) fn push_str(&mut self, v: &str) {
        match self {
            ColumnBuilder::Str(d, index) => {
                let code = match index.get(v) {
                    Some(&c) => c,
                    None => {
                        let c = d.dict.len() as u32;
                        d.dict.push(v.to_string());
                        index.insert(v.to_string(), c);
                        c
                    }
                };
                d.codes.push(code);
            }
            other => wrote_wrong_type(other, "a string"),
        }
    }

    /// A placeholder where a value is null; the host ignores it.
    fn push_placeholder(&mut self) {
        match self {
            ColumnBuilder::Float(v) => v.push(0.0),
            ColumnBuilder::Int(v) => v.push(0),
            ColumnBuilder::Str(d, _) => d.codes.push(0),
            ColumnBuilder::Boolean(v) => v.push(false),
        }
    }
}

/// A window key as `finish` sees it. A string borrows from the call's key dictionary (ABI 0.4 sends
/// each distinct key once per call): comparing it or looking it up allocates nothing;
/// `s.to_string()` keeps it past the call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Boolean(bool),
    /// An integer key, or a timestamp key in milliseconds since the epoch.
    Int(i64),
    Float(f64),
    /// A string key, or a JSON key as its text.
    Str(&'a str),
}

/// The window and key whose results `finish` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window<'a> {
    /// Start (inclusive) and end (exclusive) in milliseconds since the epoch; `None` for the global
    /// window, which has no bounds.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// The key; `None` when the stage has no `key` or the record's key was null.
    pub key: Option<Value<'a>>,
}

/// Writes output rows: call one method per declared output field, in declared order, for each row.
//
// Its methods are `#[inline]` with their panics out of line, as `Batch`'s accessors are: a plugin writes
// a field per call, and a WASM build pays a sandbox call for each one not inlined.
pub struct RowWriter {
    columns: Vec<ColumnBuilder>,
    /// Per column, `None` while no value is null (nothing to send), else one flag per row.
    valid: Vec<Option<Vec<bool>>>,
    /// The column the next field goes to.
    col: usize,
    /// Rows complete so far.
    rows: usize,
}

impl RowWriter {
    pub fn new(outputs: &[Field]) -> Self {
        Self::with_capacity(outputs, 0)
    }

    /// A writer with room for `rows` rows before it grows.
    pub fn with_capacity(outputs: &[Field], rows: usize) -> Self {
        RowWriter {
            columns: outputs
                .iter()
                .map(|f| ColumnBuilder::with_capacity(f.ty, rows))
                .collect(),
            valid: vec![None; outputs.len()],
            col: 0,
            rows: 0,
        }
    }

    /// The column of the next field, moving on to the one after it.
    #[inline]
    fn advance(&mut self) -> usize {
        let i = self.col;
        self.col += 1;
        if self.col >= self.columns.len() {
            self.col = 0;
            self.rows += 1;
        }
        i
    }

    #[inline]
    fn slot(&mut self) -> &mut ColumnBuilder {
        let i = self.advance();
        if let Some(v) = &mut self.valid[i] {
            v.push(true);
        }
        &mut self.columns[i]
    }

    /// Complete rows written so far; a row is complete once every declared field is written.
    #[inline]
    pub fn rows(&self) -> usize {
        if self.col != 0 {
            incomplete(self.col, self.columns.len());
        }
        self.rows
    }

    /// A null for the next field (any type).
    pub fn null(&mut self) -> &mut Self {
        let i = self.advance();
        let col = &mut self.columns[i];
        let len = col.len();
        self.valid[i]
            .get_or_insert_with(|| vec![true; len])
            .push(false);
        col.push_placeholder();
        self
    }

    // The declared type is tested alone and anything else handled out of line: a `match` of the four
    // builders compiles to a jump table in WASM, an indirect jump per field that `perf` found to be a
    // fifth of the bundled `average`'s `finish`.
    #[inline]
    pub fn float(&mut self, v: f64) -> &mut Self {
        match self.slot() {
            ColumnBuilder::Float(c) => c.push(v),
            other => other.push_float(v),
        }
        self
    }
    #[inline]
    pub fn int(&mut self, v: i64) -> &mut Self {
        match self.slot() {
            ColumnBuilder::Int(c) => c.push(v),
            other => other.push_int(v),
        }
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.slot().push_str(v);
        self
    }
    #[inline]
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        match self.slot() {
            ColumnBuilder::Boolean(c) => c.push(v),
            other => wrote_wrong_type(other, "a boolean"),
        }
        self
    }

    /// The columns written so far; every row must have written every field. Nulls are placeholders
    /// here: [`RowWriter::finish_nullable`] says which.
    pub fn finish(self) -> Vec<Column> {
        self.finish_nullable().0
    }

    /// The columns written so far and, per column, `None` if no value is null or else one validity flag
    /// per row (`false` for null).
    pub fn finish_nullable(self) -> (Vec<Column>, Vec<Option<Vec<bool>>>) {
        let columns = self
            .columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect();
        (columns, self.valid)
    }
}

#[cold]
#[inline(never)]
pub(crate) fn wrote_wrong_type(column: &ColumnBuilder, wrote: &str) -> ! {
    panic!("output is {column:?}, wrote {wrote}")
}

#[cold]
#[inline(never)]
fn incomplete(written: usize, fields: usize) -> ! {
    panic!("a result row was left incomplete: {written} of {fields} fields written")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_writer_fills_columns_in_declared_order() {
        let mut w = RowWriter::new(&[Field::str("k"), Field::float("v")]);
        w.str("a").float(1.0);
        w.str("b").float(2.0);
        w.str("a").float(3.0);
        let cols = w.finish();
        let Column::Str(d) = &cols[0] else { panic!() };
        assert_eq!(d.dict, ["a", "b"]);
        assert_eq!(d.codes, [0, 1, 0]);
        assert_eq!(cols[1], Column::Float(vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn nulls_are_flagged_only_in_columns_that_have_them() {
        let mut w = RowWriter::new(&[Field::str("k"), Field::float("v")]);
        w.str("a").float(1.0);
        w.null().null();
        w.str("b").float(2.0);
        assert_eq!(w.rows(), 3);
        w.str("c").null();
        assert_eq!(w.rows(), 4);
        let (cols, valid) = w.finish_nullable();
        assert_eq!(valid[0], Some(vec![true, false, true, true]));
        assert_eq!(valid[1], Some(vec![true, false, true, false]));
        assert_eq!(cols[1], Column::Float(vec![1.0, 0.0, 2.0, 0.0]));
        let mut w = RowWriter::new(&[Field::int("n")]);
        w.int(1);
        assert_eq!(w.finish_nullable().1, vec![None]);
    }

    #[test]
    #[should_panic(expected = "left incomplete")]
    fn a_partial_row_is_a_plugin_bug() {
        let mut w = RowWriter::new(&[Field::str("k"), Field::float("v")]);
        w.str("a");
        w.rows();
    }

    #[test]
    fn rows_read_dictionary_strings() {
        let b = Batch {
            rows: 2,
            columns: vec![Column::Str(DictColumn {
                dict: vec!["x".into(), "y".into()],
                codes: vec![1, 0],
            })],
        };
        assert_eq!(b.row(0).str(0), "y");
        assert_eq!(b.row(1).str(0), "x");
    }
}
