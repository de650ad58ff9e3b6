//! Records as they flow between stages: batches of typed columns (Apache Arrow arrays), decoded once
//! at the source.

mod builder;
pub mod column;

pub(crate) use builder::same;
pub use builder::{BatchBuilder, Cell};

use arrow_array::{Array, ArrayRef};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One value of a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    /// Milliseconds since the Unix epoch (window bounds); written as RFC 3339 text or a BSON date.
    Time(i64),
    /// A nested JSON array or object, kept as its text: no stage looks inside it.
    Json(Arc<str>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Time(_) => "a timestamp",
            Value::Json(_) => "a JSON array or object",
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as JSON, for the file sink and dead-letter lines.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.as_ref().into(),
            Value::Time(ms) => format_rfc3339(*ms).into(),
            Value::Json(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
        }
    }

    pub fn from_json(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.into()),
            other => Value::Json(other.to_string().into()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) | Value::Json(s) => f.write_str(s),
            Value::Time(ms) => f.write_str(&format_rfc3339(*ms)),
        }
    }
}

/// A value usable as a grouping key: floats compare by bits, so keys are hashable and ordered.
#[derive(Clone, Debug)]
pub struct Key(pub Value);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        }
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let tag: u8 = match &self.0 {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => STR_TAG,
            Value::Time(_) => 5,
            Value::Json(_) => 6,
        };
        h.write_u8(tag);
        match &self.0 {
            Value::Null => {}
            Value::Bool(b) => b.hash(h),
            Value::Int(i) | Value::Time(i) => i.hash(h),
            Value::Float(x) => x.to_bits().hash(h),
            Value::Str(s) | Value::Json(s) => s.hash(h),
        }
    }
}

const STR_TAG: u8 = 4;

/// A string key, borrowed: it hashes and compares as `Key(Value::Str(..))` of the same text does, so a
/// table of keys is searched without making a key (and its `Arc<str>`) first.
pub struct StrKey<'a>(pub &'a str);

impl Hash for StrKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u8(STR_TAG);
        self.0.hash(h);
    }
}

impl hashbrown::Equivalent<Key> for StrKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        matches!(&key.0, Value::Str(s) if **s == *self.0)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Int(_) | Value::Float(_) => 2,
                Value::Time(_) => 3,
                Value::Str(_) => 4,
                Value::Json(_) => 5,
            }
        }
        use Value::*;
        match (&self.0, &other.0) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) | (Time(a), Time(b)) => a.cmp(b),
            (Str(a), Str(b)) | (Json(a), Json(b)) => a.cmp(b),
            (a @ (Int(_) | Float(_)), b @ (Int(_) | Float(_))) => {
                a.as_f64().unwrap().total_cmp(&b.as_f64().unwrap())
            }
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

/// Where a record came from, for dead-letter lines and (later) offsets to commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
}

/// Holds the records it stands for uncommitted at their source while any stage still holds a clone.
///
/// A source that commits progress (Kafka) makes one per batch, wrapping a value whose `Drop` tells the
/// source those records are done. Operators that buffer records (windows) keep the tokens of what they
/// buffer and pass them on with their results; sinks drop them only once the data is durable (written,
/// or spooled to disk). So a commit never runs ahead of what the sinks hold, which makes delivery
/// at-least-once, and exact with idempotent sinks.
#[derive(Clone)]
pub struct Ack(Arc<dyn Send + Sync>);

impl Ack {
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        Ack(Arc::new(inner))
    }

    pub fn same(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Adds `new` to `acks` unless it is already there (tokens are few per batch; a scan is cheapest).
    pub fn merge_into(acks: &mut Vec<Ack>, new: &[Ack]) {
        for a in new {
            if !acks.iter().rev().any(|b| b.same(a)) {
                acks.push(a.clone());
            }
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ack")
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

/// A named column: an Arrow array (see [`column`] for which array types hold which values).
#[derive(Clone, Debug)]
pub struct Column {
    pub name: Arc<str>,
    pub array: ArrayRef,
}

impl Column {
    pub fn new(name: impl Into<Arc<str>>, array: ArrayRef) -> Self {
        Column {
            name: name.into(),
            array,
        }
    }

    /// One cell as a [`Value`]: the general path, for sinks that write few rows and for error reports.
    pub fn value(&self, row: usize) -> Value {
        column::value(self.array.as_ref(), row)
    }

    /// Every cell as a [`Value`] (tests and small result sets).
    pub fn values(&self) -> Vec<Value> {
        (0..self.array.len()).map(|r| self.value(r)).collect()
    }
}

impl PartialEq for Column {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.array.to_data() == other.array.to_data()
    }
}

/// A batch of records in columns. Every column has `len` rows; a record without a field holds null.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub len: usize,
    /// Event time of each record, in milliseconds since the epoch.
    pub time: Vec<i64>,
    pub origin: Vec<Origin>,
    pub columns: Vec<Column>,
    /// Source progress this batch depends on; see [`Ack`].
    pub acks: Vec<Ack>,
}

impl Batch {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| &*c.name == name)
    }

    /// One cell as a [`Value`]; `Null` when the batch has no such field.
    pub fn value(&self, name: &str, row: usize) -> Value {
        self.column(name).map_or(Value::Null, |c| c.value(row))
    }

    /// The rows listed, in that order (rows may repeat).
    pub fn gather(&self, rows: &[u32]) -> Batch {
        Batch {
            len: rows.len(),
            time: rows.iter().map(|&r| self.time[r as usize]).collect(),
            origin: rows.iter().map(|&r| self.origin[r as usize]).collect(),
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    array: column::take(&c.array, rows),
                })
                .collect(),
            acks: self.acks.clone(),
        }
    }

    /// Replaces a column's array, or appends the column.
    pub fn set_column(&mut self, name: Arc<str>, array: ArrayRef) {
        debug_assert_eq!(array.len(), self.len);
        match self.columns.iter_mut().find(|c| c.name == name) {
            Some(c) => c.array = array,
            None => self.columns.push(Column { name, array }),
        }
    }

    /// One record as a JSON object, for dead-letter lines.
    pub fn row_json(&self, row: usize) -> serde_json::Value {
        let map = self
            .columns
            .iter()
            .filter(|c| c.array.is_valid(row))
            .map(|c| (c.name.to_string(), c.value(row).to_json()))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn format_rfc3339(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(ms, &mut out);
    String::from_utf8(out).expect("digits and punctuation")
}

/// Appends [`format_rfc3339`]'s text to `out` without allocating (the file sink writes two per row).
pub fn write_rfc3339(ms: i64, out: &mut Vec<u8>) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let digits = |out: &mut Vec<u8>, v: i64, n: u32| {
            for i in (0..n).rev() {
                out.push(b'0' + (v / 10_i64.pow(i) % 10) as u8);
            }
        };
        digits(out, y, 4);
        out.push(b'-');
        digits(out, m.into(), 2);
        out.push(b'-');
        digits(out, d.into(), 2);
        out.push(b'T');
        digits(out, sod / 3600, 2);
        out.push(b':');
        digits(out, sod % 3600 / 60, 2);
        out.push(b':');
        digits(out, sod % 60, 2);
        out.push(b'.');
        digits(out, millis, 3);
        out.push(b'Z');
    } else {
        use std::io::Write;
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_717_243_260_123),
            "2024-06-01T12:01:00.123Z"
        );
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn builder_fills_missing_fields_with_null() {
        let mut b = BatchBuilder::default();
        b.push(1, Origin::default(), [("a".into(), Value::Int(1))]);
        b.push(2, Origin::default(), [("b".into(), Value::Int(2))]);
        let batch = b.take();
        assert_eq!(batch.len, 2);
        assert_eq!(
            batch.column("a").unwrap().values(),
            [Value::Int(1), Value::Null]
        );
        assert_eq!(
            batch.column("b").unwrap().values(),
            [Value::Null, Value::Int(2)]
        );
    }

    #[test]
    fn keys_order_and_hash_floats() {
        let a = Key(Value::Float(1.5));
        assert_eq!(a, Key(Value::Float(1.5)));
        assert!(Key(Value::Int(1)) < Key(Value::Float(1.5)));
        assert!(Key(Value::Str("a".into())) < Key(Value::Str("b".into())));
    }
}
