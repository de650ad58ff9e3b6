//! Which Arrow arrays hold which values, and the conversions between cells and [`Value`]s.
//!
//! | values | array |
//! |---|---|
//! | floats | `Float64` |
//! | integers | `Int64` |
//! | booleans | `Boolean` |
//! | strings | `Dictionary(UInt32, Utf8)`: each distinct string once per batch, a code per row |
//! | window bounds | `Timestamp(Millisecond)` |
//! | a field whose records disagree on its type, or that holds JSON arrays/objects | `Utf8`, one JSON text per cell |
//! | a field that is null in every record | `Null` |
//!
//! A field is typed when its records agree, which is what sources see almost always: a float column is
//! then one `f64` buffer a plugin receives with one copy. The JSON-text fallback keeps every record's own
//! type (`7` stays an integer next to `7.5`), so stages report mistyped records exactly as they are.

use super::{format_rfc3339, Value};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType, UInt32Type};
use arrow_array::{
    make_array, Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array,
    NullArray, PrimitiveArray, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow_schema::{DataType, TimeUnit};
use std::sync::Arc;

/// One cell as a [`Value`].
pub fn value(a: &dyn Array, row: usize) -> Value {
    if a.is_null(row) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Float64 => Value::Float(a.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(row)),
        DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Value::Time(a.as_primitive::<TimestampMillisecondType>().value(row))
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_dictionary::<UInt32Type>();
            let code = d.keys().value(row) as usize;
            Value::Str(d.values().as_string::<i32>().value(code).into())
        }
        DataType::Utf8 => from_json_text(a.as_string::<i32>().value(row)),
        DataType::Null => Value::Null,
        other => unreachable!("tributary makes no {other} columns"),
    }
}

/// A cell of a JSON-text column as the value it was decoded from.
fn from_json_text(text: &str) -> Value {
    match text {
        "NaN" => return Value::Float(f64::NAN),
        "Infinity" => return Value::Float(f64::INFINITY),
        "-Infinity" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => Value::from_json(v),
        // Only tributary writes these cells, always as JSON; keep the text if that ever breaks.
        Err(_) => Value::Json(text.into()),
    }
}

/// A value as the text of a cell of a JSON-text column. Non-finite floats (plugin results) have no
/// JSON form; they are kept as `NaN`, `Infinity`, `-Infinity`, which only [`value`] reads.
pub fn json_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Float(f) if f.is_nan() => "NaN".into(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
        }
        Value::Json(text) => text.to_string(),
        Value::Time(ms) => serde_json::to_string(&format_rfc3339(*ms)).expect("strings serialise"),
        other => other.to_json().to_string(),
    })
}

pub fn floats(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

pub fn ints(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

pub fn bools(values: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(values))
}

pub fn times(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values))
}

/// A timestamp column with nulls where `values` has `None` (the global window has no bounds).
pub fn optional_times(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<TimestampMillisecondArray>())
}

/// A string column from a dictionary and one code per row; `None` if a code is outside the dictionary.
pub fn strings<S: AsRef<str>>(dict: &[S], codes: Vec<u32>) -> Option<ArrayRef> {
    let values: StringArray = dict.iter().map(|s| Some(s.as_ref())).collect();
    DictionaryArray::<UInt32Type>::try_new(UInt32Array::from(codes), Arc::new(values))
        .ok()
        .map(|d| Arc::new(d) as ArrayRef)
}

/// The column for arbitrary values: typed when every non-null value has one type, JSON text otherwise.
pub fn from_values(values: &[Value]) -> ArrayRef {
    let mut kind: Option<std::mem::Discriminant<Value>> = None;
    let mut uniform = true;
    for v in values.iter().filter(|v| **v != Value::Null) {
        let d = std::mem::discriminant(v);
        match kind {
            None => kind = Some(d),
            Some(k) if k != d => {
                uniform = false;
                break;
            }
            _ => {}
        }
    }
    let first = values.iter().find(|v| **v != Value::Null);
    match (uniform, first) {
        (_, None) => Arc::new(NullArray::new(values.len())),
        (true, Some(Value::Float(_))) => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Float(f) => Some(*f),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        (true, Some(Value::Int(_))) => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        (true, Some(Value::Time(_))) => optional_times(values.iter().map(|v| match v {
            Value::Time(t) => Some(*t),
            _ => None,
        })),
        (true, Some(Value::Bool(_))) => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        (true, Some(Value::Str(_))) => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Some(&**s),
                    _ => None,
                })
                .collect::<DictionaryArray<UInt32Type>>(),
        ),
        _ => Arc::new(values.iter().map(json_text).collect::<StringArray>()),
    }
}

/// The rows listed, in that order (rows may repeat).
pub fn take(a: &ArrayRef, rows: &[u32]) -> ArrayRef {
    fn prim<T: arrow_array::ArrowPrimitiveType>(
        a: &PrimitiveArray<T>,
        rows: &[u32],
    ) -> PrimitiveArray<T> {
        if a.null_count() == 0 {
            let v = a.values();
            PrimitiveArray::<T>::from_iter_values(rows.iter().map(|&r| v[r as usize]))
        } else {
            rows.iter()
                .map(|&r| a.is_valid(r as usize).then(|| a.value(r as usize)))
                .collect()
        }
    }
    match a.data_type() {
        DataType::Float64 => Arc::new(prim(a.as_primitive::<Float64Type>(), rows)),
        DataType::Int64 => Arc::new(prim(a.as_primitive::<Int64Type>(), rows)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Arc::new(prim(a.as_primitive::<TimestampMillisecondType>(), rows))
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_dictionary::<UInt32Type>();
            let keys = prim(d.keys(), rows);
            Arc::new(DictionaryArray::<UInt32Type>::new(keys, d.values().clone()))
        }
        DataType::Null => Arc::new(NullArray::new(rows.len())),
        _ => {
            let data = a.to_data();
            let mut m = arrow_data::transform::MutableArrayData::new(vec![&data], true, rows.len());
            for &r in rows {
                m.try_extend(0, r as usize, r as usize + 1)
                    .expect("rows of one array fit one array");
            }
            make_array(m.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_values_make_typed_columns_and_mixed_ones_keep_each_type() {
        let typed = from_values(&[Value::Float(1.5), Value::Null, Value::Float(2.0)]);
        assert_eq!(typed.data_type(), &DataType::Float64);
        assert_eq!(value(typed.as_ref(), 1), Value::Null);
        assert_eq!(value(typed.as_ref(), 2), Value::Float(2.0));

        let mixed = [
            Value::Int(7),
            Value::Float(7.0),
            Value::Str("x".into()),
            Value::Json("[1,2]".into()),
            Value::Null,
            Value::Bool(true),
            Value::Float(f64::INFINITY),
        ];
        let col = from_values(&mixed);
        assert_eq!(col.data_type(), &DataType::Utf8);
        let back: Vec<Value> = (0..mixed.len()).map(|r| value(col.as_ref(), r)).collect();
        assert_eq!(back, mixed);
    }

    #[test]
    fn take_repeats_and_keeps_nulls() {
        let s = from_values(&[Value::Str("a".into()), Value::Null, Value::Str("b".into())]);
        let t = take(&s, &[2, 2, 1, 0]);
        let got: Vec<Value> = (0..4).map(|r| value(t.as_ref(), r)).collect();
        assert_eq!(
            got,
            [
                Value::Str("b".into()),
                Value::Str("b".into()),
                Value::Null,
                Value::Str("a".into())
            ]
        );
        let j = from_values(&[Value::Int(1), Value::Str("x".into())]);
        assert_eq!(value(take(&j, &[1]).as_ref(), 0), Value::Str("x".into()));
    }

    #[test]
    fn string_codes_outside_the_dictionary_are_refused() {
        assert!(strings(&["a"], vec![0, 1]).is_none());
        let ok = strings(&["a", "b"], vec![1, 0]).unwrap();
        assert_eq!(value(ok.as_ref(), 0), Value::Str("b".into()));
    }
}
