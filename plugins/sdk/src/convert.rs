//! Moves data between the generated bindings and the SDK's own types; vectors move, nothing is copied.

use crate::bindings::types as wit;
use crate::{Batch, Column, Config, ConfigValue, DictColumn, Field, FieldType, Spec};

/// Pane `i`'s key, borrowed from the call's keys (ABI 0.4): a string key from the packed dictionary.
#[cfg(feature = "aggregate")]
#[inline]
pub fn key_in(keys: &crate::bindings::iface::Keys, i: usize) -> Option<crate::Value<'_>> {
    use crate::bindings::iface::{KeyValues, Keys};
    use crate::Value;
    match keys {
        Keys::AllNull => None,
        Keys::Column(c) => {
            if c.valid.as_ref().is_some_and(|v| !v[i]) {
                return None;
            }
            Some(match &c.values {
                KeyValues::Boolean(v) => Value::Boolean(v[i]),
                KeyValues::Int(v) => Value::Int(v[i]),
                KeyValues::Float(v) => Value::Float(v[i]),
                KeyValues::Str(d) => {
                    let code = d.codes[i] as usize;
                    let (from, to) = (d.dict.offsets[code], d.dict.offsets[code + 1]);
                    Value::Str(&d.dict.text[from as usize..to as usize])
                }
            })
        }
        Keys::Mixed(keys) => keys[i].as_ref().map(|k| match k {
            wit::Value::Boolean(b) => Value::Boolean(*b),
            wit::Value::Int(n) => Value::Int(*n),
            wit::Value::Float(f) => Value::Float(*f),
            wit::Value::Str(s) => Value::Str(s),
        }),
    }
}

pub fn config(entries: Vec<(String, wit::ConfigValue)>) -> Config {
    Config::new(
        entries
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    wit::ConfigValue::Boolean(b) => ConfigValue::Boolean(b),
                    wit::ConfigValue::Integer(i) => ConfigValue::Integer(i),
                    wit::ConfigValue::Float(f) => ConfigValue::Float(f),
                    wit::ConfigValue::Text(s) => ConfigValue::Text(s),
                };
                (k, v)
            })
            .collect(),
    )
}

fn field(f: Field) -> wit::Field {
    let ty = match f.ty {
        FieldType::Float => wit::FieldType::Float,
        FieldType::Int => wit::FieldType::Int,
        FieldType::Str => wit::FieldType::Str,
        FieldType::Boolean => wit::FieldType::Boolean,
    };
    wit::Field { name: f.name, ty }
}

#[cfg(feature = "aggregate")]
pub fn spec(s: Spec) -> wit::Spec {
    assert!(
        s.drops.is_empty(),
        "an aggregate's results hold only its outputs: it cannot drop fields (`Spec::drop` is for transforms)"
    );
    wit::Spec {
        inputs: s.inputs.into_iter().map(field).collect(),
        outputs: s.outputs.into_iter().map(field).collect(),
    }
}

#[cfg(feature = "transform")]
pub fn transform_spec(s: Spec) -> crate::bindings::iface::TransformSpec {
    crate::bindings::iface::TransformSpec {
        inputs: s.inputs.into_iter().map(field).collect(),
        outputs: s.outputs.into_iter().map(field).collect(),
        drops: s.drops,
    }
}

/// Columns and their validity (see [`crate::RowWriter::finish_nullable`]); no validity means no nulls.
pub fn nullable_out(
    columns: Vec<Column>,
    valid: Vec<Option<Vec<bool>>>,
) -> Vec<wit::NullableColumn> {
    let mut valid = valid.into_iter();
    columns
        .into_iter()
        .map(|c| wit::NullableColumn {
            values: column_out(c),
            valid: valid.next().flatten(),
        })
        .collect()
}

pub fn batch_in(b: wit::Batch) -> Batch {
    Batch {
        rows: b.rows as usize,
        columns: b.columns.into_iter().map(column_in).collect(),
    }
}

pub fn column_in(c: wit::Column) -> Column {
    match c {
        wit::Column::Float(v) => Column::Float(v),
        wit::Column::Int(v) => Column::Int(v),
        wit::Column::Str(d) => Column::Str(DictColumn {
            dict: d.dict,
            codes: d.codes,
        }),
        wit::Column::Boolean(v) => Column::Boolean(v),
    }
}

pub fn column_out(c: Column) -> wit::Column {
    match c {
        Column::Float(v) => wit::Column::Float(v),
        Column::Int(v) => wit::Column::Int(v),
        Column::Str(d) => wit::Column::Str(wit::DictColumn {
            dict: d.dict,
            codes: d.codes,
        }),
        Column::Boolean(v) => wit::Column::Boolean(v),
    }
}

pub fn errors_out(errors: Vec<(usize, String)>) -> Vec<wit::RowError> {
    errors
        .into_iter()
        .map(|(row, reason)| wit::RowError {
            row: row as u32,
            reason,
        })
        .collect()
}
