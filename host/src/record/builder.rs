//! Builds a batch record by record, straight into typed column buffers.
//!
//! Sources decode each record's fields into [`Cell`]s that borrow from the input line, and the builder
//! appends them to per-field buffers: floats to a `Vec<f64>`, strings to a per-batch dictionary (one
//! hash of the bytes, no allocation for a string seen before). A field's buffer is typed by the first
//! value it gets; a value of another type turns that field, for this batch only, into a JSON-text
//! column (see [`column`](super::column)), so no record's value is ever coerced.

use super::column::json_text;
use super::{Batch, Column, Origin, Value};
use arrow_array::types::UInt32Type;
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, NullArray, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// One decoded field value, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Time(i64),
    /// A JSON array or object, as compact JSON text.
    Json(&'a str),
}

impl<'a> Cell<'a> {
    pub fn of(v: &'a Value) -> Cell<'a> {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Int(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Str(s) => Cell::Str(s),
            Value::Time(t) => Cell::Time(*t),
            Value::Json(j) => Cell::Json(j),
        }
    }

    fn to_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::Int(i),
            Cell::Float(f) => Value::Float(f),
            Cell::Str(s) => Value::Str(s.into()),
            Cell::Time(t) => Value::Time(t),
            Cell::Json(j) => Value::Json(j.into()),
        }
    }
}

/// Whether two byte strings are equal. Field names and dictionary strings are short, where a call to
/// libc's `memcmp` costs more than the comparison (it was 5% of a run's CPU): up to 16 bytes are
/// compared as two overlapping words. (Longer runs, such as the text between a capture line's values,
/// are `memcmp`'s: a loop of words was slower.)
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Distinct strings of one column of one batch, each stored once.
#[derive(Default)]
struct Dict {
    bytes: Vec<u8>,
    offsets: Vec<i32>,
    table: hashbrown::HashTable<u32>,
}

impl Dict {
    /// Room for `n` distinct strings (the field's count in the last batch), so that its table is not
    /// rehashed as it grows (1.3% of the samples of a decode-only run).
    fn with_room(n: usize) -> Self {
        Dict {
            bytes: Vec::new(),
            offsets: Vec::with_capacity(n + 1),
            table: hashbrown::HashTable::with_capacity(n),
        }
    }

    /// Distinct strings so far.
    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn code(&mut self, s: &str, hasher: &foldhash::fast::FixedState) -> u32 {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let hash = hasher.hash_one(s.as_bytes());
        let (bytes, offsets) = (&self.bytes, &self.offsets);
        let entry = |code: u32| {
            let (a, b) = (offsets[code as usize], offsets[code as usize + 1]);
            &bytes[a as usize..b as usize]
        };
        if let Some(&code) = self.table.find(hash, |&c| same(entry(c), s.as_bytes())) {
            return code;
        }
        let code = (self.offsets.len() - 1) as u32;
        self.bytes.extend_from_slice(s.as_bytes());
        self.offsets.push(self.bytes.len() as i32);
        let (bytes, offsets) = (&self.bytes, &self.offsets);
        self.table.insert_unique(hash, code, |&c| {
            let (a, b) = (offsets[c as usize], offsets[c as usize + 1]);
            hasher.hash_one(&bytes[a as usize..b as usize])
        });
        code
    }

    fn finish(self) -> StringArray {
        let mut offsets = self.offsets;
        if offsets.is_empty() {
            offsets.push(0);
        }
        StringArray::new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(self.bytes),
            None,
        )
    }
}

/// A field's values so far, typed by the first non-null value.
enum Data {
    /// Only nulls so far.
    Nulls,
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
    Time(Vec<i64>),
    Str(Vec<u32>, Dict),
    /// Records disagree on the type: each cell as JSON text.
    Json(Vec<Option<String>>),
}

struct Field {
    name: Arc<str>,
    /// Distinct strings of this field in the last batch, the expected count in this one.
    distinct: usize,
    /// Rows expected in this batch (the last batch's): typed buffers are allocated once at that size
    /// rather than grown by doubling.
    capacity: usize,
    data: Data,
    /// Validity per row; `None` while every row so far is valid.
    valid: Option<Vec<bool>>,
    len: usize,
}

impl Field {
    fn new(name: Arc<str>, rows: usize, capacity: usize, distinct: usize) -> Self {
        Field {
            name,
            distinct,
            capacity,
            data: Data::Nulls,
            // The records before this field first appeared do not have it.
            valid: (rows > 0).then(|| vec![false; rows]),
            len: rows,
        }
    }

    fn mark(&mut self, ok: bool) {
        match &mut self.valid {
            Some(v) => v.push(ok),
            None if ok => {}
            None => {
                let mut v = vec![true; self.len];
                v.push(false);
                self.valid = Some(v);
            }
        }
        self.len += 1;
    }

    fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row])
    }

    fn push_null(&mut self) {
        match &mut self.data {
            Data::Nulls => {}
            Data::Float(v) => v.push(0.0),
            Data::Int(v) | Data::Time(v) => v.push(0),
            Data::Bool(v) => v.push(false),
            Data::Str(v, _) => v.push(0),
            Data::Json(v) => v.push(None),
        }
        self.mark(false);
    }

    /// Removes the last row (a field repeated in one record: the last one wins).
    fn pop(&mut self) {
        match &mut self.data {
            Data::Nulls => {}
            Data::Float(v) => drop(v.pop()),
            Data::Int(v) | Data::Time(v) => drop(v.pop()),
            Data::Bool(v) => drop(v.pop()),
            Data::Str(v, _) => drop(v.pop()),
            Data::Json(v) => drop(v.pop()),
        }
        if let Some(v) = &mut self.valid {
            v.pop();
        }
        self.len -= 1;
    }

    fn push(&mut self, cell: Cell<'_>, hasher: &foldhash::fast::FixedState) {
        if matches!(self.data, Data::Nulls) && cell != Cell::Null {
            let (n, cap) = (self.len, self.capacity);
            self.data = match cell {
                Cell::Float(_) => Data::Float(filled(n, cap, 0.0)),
                Cell::Int(_) => Data::Int(filled(n, cap, 0)),
                Cell::Bool(_) => Data::Bool(filled(n, cap, false)),
                Cell::Time(_) => Data::Time(filled(n, cap, 0)),
                Cell::Str(_) => Data::Str(filled(n, cap, 0), Dict::with_room(self.distinct)),
                Cell::Json(_) | Cell::Null => Data::Json(vec![None; n]),
            };
        }
        match (&mut self.data, cell) {
            (_, Cell::Null) => return self.push_null(),
            (Data::Float(v), Cell::Float(f)) => v.push(f),
            (Data::Int(v), Cell::Int(i)) | (Data::Time(v), Cell::Time(i)) => v.push(i),
            (Data::Bool(v), Cell::Bool(b)) => v.push(b),
            (Data::Str(v, dict), Cell::Str(s)) => v.push(dict.code(s, hasher)),
            (Data::Json(v), cell) => v.push(json_text(&cell.to_value())),
            (_, cell) => {
                self.make_json_text();
                return self.push(cell, hasher);
            }
        }
        self.mark(true);
    }

    /// Turns the typed buffer into JSON text cells, keeping every value as it was.
    fn make_json_text(&mut self) {
        let values = std::mem::replace(&mut self.data, Data::Nulls);
        let cells: Vec<Option<String>> = (0..self.len)
            .map(|r| {
                if !self.is_valid(r) {
                    return None;
                }
                let v = match &values {
                    Data::Nulls => Value::Null,
                    Data::Float(v) => Value::Float(v[r]),
                    Data::Int(v) => Value::Int(v[r]),
                    Data::Time(v) => Value::Time(v[r]),
                    Data::Bool(v) => Value::Bool(v[r]),
                    Data::Str(v, d) => {
                        let (a, b) = (d.offsets[v[r] as usize], d.offsets[v[r] as usize + 1]);
                        let s = std::str::from_utf8(&d.bytes[a as usize..b as usize])
                            .expect("dictionary holds whole strings");
                        Value::Str(s.into())
                    }
                    Data::Json(v) => return v[r].clone(),
                };
                json_text(&v)
            })
            .collect();
        self.data = Data::Json(cells);
    }

    fn finish(self) -> Column {
        let nulls = self.valid.map(NullBuffer::from);
        let array: ArrayRef = match self.data {
            Data::Nulls => Arc::new(NullArray::new(self.len)),
            Data::Float(v) => Arc::new(Float64Array::new(v.into(), nulls)),
            Data::Int(v) => Arc::new(Int64Array::new(v.into(), nulls)),
            Data::Time(v) => Arc::new(TimestampMillisecondArray::new(v.into(), nulls)),
            Data::Bool(v) => {
                let values = BooleanArray::from(v);
                Arc::new(BooleanArray::new(values.values().clone(), nulls))
            }
            Data::Str(codes, dict) => {
                let keys = UInt32Array::new(codes.into(), nulls);
                Arc::new(
                    DictionaryArray::<UInt32Type>::try_new(keys, Arc::new(dict.finish()))
                        .expect("codes index the dictionary"),
                )
            }
            Data::Json(v) => Arc::new(StringArray::from(v)),
        };
        Column {
            name: self.name,
            array,
        }
    }
}

/// `n` copies of `x` in a vector with room for `capacity`.
fn filled<T: Clone>(n: usize, capacity: usize, x: T) -> Vec<T> {
    let mut v = Vec::with_capacity(capacity.max(n));
    v.resize(n, x);
    v
}

/// Builds a batch record by record, adding columns as new field names appear.
#[derive(Default)]
pub struct BatchBuilder {
    len: usize,
    time: Vec<i64>,
    origin: Vec<Origin>,
    fields: Vec<Field>,
    /// Field index by name, for this batch.
    index: HashMap<Arc<str>, usize, foldhash::fast::FixedState>,
    /// Field names across batches, so a name is allocated once per run, with the field's count of
    /// distinct strings in the last batch that had it.
    names: HashMap<Arc<str>, usize, foldhash::fast::FixedState>,
    /// The field seen at each position of the previous record: records usually list fields in the same
    /// order, so a comparison of names usually replaces a hash lookup.
    hint: Vec<usize>,
    /// Fields set in the record being built.
    set: usize,
    /// The length of the last batch taken, the expected length of the next.
    capacity: usize,
    hasher: foldhash::fast::FixedState,
}

impl BatchBuilder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts a record.
    pub fn begin(&mut self, time: i64, origin: Origin) {
        self.time.push(time);
        self.origin.push(origin);
        self.set = 0;
    }

    /// Sets the field `name`, the `pos`-th of the record, in the record begun last.
    pub fn set(&mut self, pos: usize, name: &str, cell: Cell<'_>) {
        let i = match self.hint.get(pos) {
            Some(&i)
                if i < self.fields.len()
                    && same(self.fields[i].name.as_bytes(), name.as_bytes()) =>
            {
                i
            }
            _ => {
                let i = self.field(name);
                if pos < self.hint.len() {
                    self.hint[pos] = i;
                } else if pos == self.hint.len() {
                    self.hint.push(i);
                }
                i
            }
        };
        let field = &mut self.fields[i];
        if field.len > self.len {
            // A field repeated in one record: the last one wins, as in most JSON readers.
            field.pop();
            self.set -= 1;
        }
        field.push(cell, &self.hasher);
        self.set += 1;
    }

    /// Ends the record begun last: fields it did not set are null.
    pub fn end(&mut self) {
        self.len += 1;
        if self.set != self.fields.len() {
            for f in &mut self.fields {
                if f.len < self.len {
                    f.push_null();
                }
            }
        }
    }

    fn field(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let (name, distinct): (Arc<str>, usize) = match self.names.get_key_value(name) {
            Some((k, n)) => (k.clone(), *n),
            None => {
                let k: Arc<str> = name.into();
                if self.names.len() < 1 << 12 {
                    self.names.insert(k.clone(), 0);
                }
                (k, 0)
            }
        };
        let i = self.fields.len();
        self.fields
            .push(Field::new(name.clone(), self.len, self.capacity, distinct));
        self.index.insert(name, i);
        i
    }

    /// Adds a whole record of named values.
    pub fn push(
        &mut self,
        time: i64,
        origin: Origin,
        fields: impl IntoIterator<Item = (Arc<str>, Value)>,
    ) {
        self.begin(time, origin);
        for (pos, (name, value)) in fields.into_iter().enumerate() {
            self.set(pos, &name, Cell::of(&value));
        }
        self.end();
    }

    pub fn take(&mut self) -> Batch {
        self.index.clear();
        let len = std::mem::take(&mut self.len);
        // Batches of a run are usually alike in size.
        self.capacity = len;
        Batch {
            len,
            time: std::mem::replace(&mut self.time, Vec::with_capacity(len)),
            origin: std::mem::replace(&mut self.origin, Vec::with_capacity(len)),
            columns: self
                .fields
                .drain(..)
                .map(|f| {
                    if let (Data::Str(_, dict), Some(n)) = (&f.data, self.names.get_mut(&f.name)) {
                        *n = dict.len();
                    }
                    f.finish()
                })
                .collect(),
            acks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_schema::DataType;

    #[test]
    fn typed_columns_dictionary_strings_and_repeated_fields() {
        let mut b = BatchBuilder::default();
        for (i, g) in ["Rock", "Jazz", "Rock"].iter().enumerate() {
            b.begin(i as i64, Origin::default());
            b.set(0, "genre", Cell::Str(g));
            b.set(1, "streams", Cell::Float(i as f64));
            b.set(2, "streams", Cell::Float(10.0 + i as f64));
            b.end();
        }
        let batch = b.take();
        let genre = batch.column("genre").unwrap();
        assert!(matches!(
            genre.array.data_type(),
            DataType::Dictionary(_, _)
        ));
        assert_eq!(genre.value(2), Value::Str("Rock".into()));
        let streams = batch.column("streams").unwrap();
        assert_eq!(streams.array.data_type(), &DataType::Float64);
        assert_eq!(
            streams.values(),
            [Value::Float(10.0), Value::Float(11.0), Value::Float(12.0)]
        );
        assert_eq!(batch.columns.len(), 2);
    }

    #[test]
    fn an_explicit_null_before_the_first_value_stays_null() {
        let mut b = BatchBuilder::default();
        let rows = [
            Value::Null,
            Value::Float(1.5),
            Value::Null,
            Value::Float(2.5),
        ];
        for v in &rows {
            b.push(0, Origin::default(), [("x".into(), v.clone())]);
        }
        // And a field first seen later, then repeated within its record.
        b.begin(0, Origin::default());
        b.set(0, "y", Cell::Null);
        b.set(1, "y", Cell::Int(7));
        b.end();
        let batch = b.take();
        let mut expected = rows.to_vec();
        expected.push(Value::Null);
        assert_eq!(batch.column("x").unwrap().values(), expected);
        assert_eq!(
            batch.column("y").unwrap().values(),
            [
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Int(7)
            ]
        );
    }

    #[test]
    fn a_dictionary_starts_with_room_for_the_last_batchs_strings() {
        let mut b = BatchBuilder::default();
        for i in 0..100 {
            b.begin(0, Origin::default());
            b.set(0, "s", Cell::Str(&format!("v{}", i % 50)));
            b.end();
        }
        b.take();
        b.begin(0, Origin::default());
        b.set(0, "s", Cell::Str("v0"));
        b.end();
        let Data::Str(_, dict) = &b.fields[0].data else {
            panic!("a string column")
        };
        assert!(dict.table.capacity() >= 50, "{}", dict.table.capacity());
        assert_eq!(b.take().columns[0].values(), [Value::Str("v0".into())]);
    }

    #[test]
    fn short_comparisons_agree_with_slice_equality() {
        // Lengths compared by words (up to 16) and by `memcmp` past them.
        let text =
            b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&()*+,-./:;<=>?@";
        for n in 0..=text.len() {
            let a = &text[..n];
            assert!(same(a, a));
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same(a, &b), "differs at {at} of {n}");
            }
            assert!(!same(a, &text[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn a_type_change_keeps_each_value_as_it_was() {
        let mut b = BatchBuilder::default();
        let rows = [
            Value::Float(1.5),
            Value::Null,
            Value::Int(2),
            Value::Str("x".into()),
        ];
        for v in &rows {
            b.push(0, Origin::default(), [("v".into(), v.clone())]);
        }
        b.push(0, Origin::default(), [("w".into(), Value::Int(1))]);
        let batch = b.take();
        let v = batch.column("v").unwrap();
        assert_eq!(v.array.data_type(), &DataType::Utf8);
        assert_eq!(v.values()[..4], rows);
        assert_eq!(v.value(4), Value::Null);
        assert_eq!(
            batch.column("w").unwrap().values(),
            [
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Int(1)
            ]
        );
    }
}
