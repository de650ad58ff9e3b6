//! Host batches ↔ the ABI's columns. Only the fields a plugin declared cross the boundary; a record
//! whose value does not fit the declared type is set aside with a reason instead of being passed.

use super::bindings::types as wit;
use crate::record::{column, Batch, Value};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, NullArray};
use arrow_schema::DataType;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Int,
    Str,
    Boolean,
}

/// A field a plugin declared in its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: Arc<str>,
    pub ty: FieldType,
}

impl From<wit::Field> for FieldSpec {
    fn from(f: wit::Field) -> Self {
        let ty = match f.ty {
            wit::FieldType::Float => FieldType::Float,
            wit::FieldType::Int => FieldType::Int,
            wit::FieldType::Str => FieldType::Str,
            wit::FieldType::Boolean => FieldType::Boolean,
        };
        FieldSpec {
            name: f.name.into(),
            ty,
        }
    }
}

/// Why a value cannot be passed as the declared type, or `None` if it can.
fn reject(field: &FieldSpec, v: &Value) -> Option<String> {
    let name = &field.name;
    match (field.ty, v) {
        (_, Value::Null) => Some(format!("missing field `{name}`")),
        (FieldType::Float, Value::Float(f)) if !f.is_finite() => {
            Some(format!("field `{name}` is {f}, not a finite number"))
        }
        (FieldType::Float, Value::Float(_) | Value::Int(_)) => None,
        (FieldType::Int, Value::Int(_) | Value::Time(_)) => None,
        (FieldType::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => None,
        (FieldType::Str, Value::Str(_)) => None,
        (FieldType::Boolean, Value::Bool(_)) => None,
        (ty, v) => {
            let want = match ty {
                FieldType::Float => "a number",
                FieldType::Int => "an integer",
                FieldType::Str => "a string",
                FieldType::Boolean => "a boolean",
            };
            Some(format!(
                "field `{name}` must be {want}, found {}",
                v.type_name()
            ))
        }
    }
}

/// Whether row `row` of `a` can be passed as `field`'s type; the reason comes from [`reject`].
fn fits(field: &FieldSpec, a: &dyn Array, row: usize) -> bool {
    if a.is_null(row) {
        return false;
    }
    match (field.ty, a.data_type()) {
        (FieldType::Float, DataType::Float64) => {
            a.as_primitive::<Float64Type>().value(row).is_finite()
        }
        (FieldType::Float, DataType::Int64)
        | (FieldType::Int, DataType::Int64 | DataType::Timestamp(_, _))
        | (FieldType::Str, DataType::Dictionary(_, _))
        | (FieldType::Boolean, DataType::Boolean) => true,
        _ => reject(field, &column::value(a, row)).is_none(),
    }
}

/// Whether every row of `a` can be passed as `field`'s type, checked a buffer at a time.
fn all_fit(field: &FieldSpec, a: &dyn Array) -> bool {
    if a.null_count() > 0 {
        return false;
    }
    match (field.ty, a.data_type()) {
        (FieldType::Float, DataType::Float64) => a
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .all(|f| f.is_finite()),
        (FieldType::Float, DataType::Int64)
        | (FieldType::Int, DataType::Int64 | DataType::Timestamp(_, _))
        | (FieldType::Str, DataType::Dictionary(_, _))
        | (FieldType::Boolean, DataType::Boolean) => true,
        _ => false,
    }
}

/// The declared fields of the rows in `rows` (or of all rows), as ABI columns. Rows that do not fit
/// are left out and returned with their reason; `kept` lists the rows passed, in order.
pub struct Converted {
    pub batch: wit::Batch,
    pub kept: Vec<u32>,
    pub rejected: Vec<(usize, String)>,
}

pub fn to_wit(batch: &Batch, fields: &[FieldSpec], rows: Option<&[u32]>) -> Converted {
    let missing: ArrayRef = Arc::new(NullArray::new(batch.len));
    let columns: Vec<&ArrayRef> = fields
        .iter()
        .map(|f| batch.column(&f.name).map_or(&missing, |c| &c.array))
        .collect();
    let clean = fields
        .iter()
        .zip(&columns)
        .all(|(f, a)| all_fit(f, a.as_ref()));

    let mut rejected = Vec::new();
    let kept: Vec<u32> = match (rows, clean) {
        (None, true) => (0..batch.len as u32).collect(),
        (Some(rows), true) => rows.to_vec(),
        (rows, false) => {
            let all: Vec<u32>;
            let rows = match rows {
                Some(r) => r,
                None => {
                    all = (0..batch.len as u32).collect();
                    &all
                }
            };
            let mut kept = Vec::with_capacity(rows.len());
            'rows: for &r in rows {
                for (f, a) in fields.iter().zip(&columns) {
                    if !fits(f, a.as_ref(), r as usize) {
                        let reason = reject(f, &column::value(a.as_ref(), r as usize))
                            .expect("a value that does not fit has a reason");
                        rejected.push((r as usize, reason));
                        continue 'rows;
                    }
                }
                kept.push(r);
            }
            kept
        }
    };
    let identity = kept.len() == batch.len;

    let out = fields
        .iter()
        .zip(&columns)
        .map(|(f, a)| {
            let a = a.as_ref();
            let slow = || kept.iter().map(|&r| column::value(a, r as usize));
            match (f.ty, a.data_type()) {
                (FieldType::Float, DataType::Float64) => {
                    let v = a.as_primitive::<Float64Type>().values();
                    wit::Column::Float(if identity {
                        v.to_vec()
                    } else {
                        kept.iter().map(|&r| v[r as usize]).collect()
                    })
                }
                (FieldType::Float, DataType::Int64) => {
                    let v = a.as_primitive::<Int64Type>().values();
                    wit::Column::Float(kept.iter().map(|&r| v[r as usize] as f64).collect())
                }
                (FieldType::Float, _) => {
                    wit::Column::Float(slow().map(|v| v.as_f64().expect("checked")).collect())
                }
                (FieldType::Int, DataType::Int64) => {
                    let v = a.as_primitive::<Int64Type>().values();
                    wit::Column::Int(kept.iter().map(|&r| v[r as usize]).collect())
                }
                (FieldType::Int, _) => wit::Column::Int(
                    slow()
                        .map(|v| match v {
                            Value::Int(i) | Value::Time(i) => i,
                            Value::Float(x) => x as i64,
                            _ => unreachable!("checked above"),
                        })
                        .collect(),
                ),
                (FieldType::Boolean, DataType::Boolean) => {
                    let b = a.as_boolean();
                    wit::Column::Boolean(kept.iter().map(|&r| b.value(r as usize)).collect())
                }
                (FieldType::Boolean, _) => {
                    wit::Column::Boolean(slow().map(|v| matches!(v, Value::Bool(true))).collect())
                }
                (FieldType::Str, DataType::Dictionary(_, _)) => {
                    // The batch's dictionary goes as it is, once; rows keep their codes.
                    let d = a.as_dictionary::<UInt32Type>();
                    let values = d.values().as_string::<i32>();
                    let keys = d.keys().values();
                    wit::Column::Str(wit::DictColumn {
                        dict: values.iter().map(|s| s.unwrap_or("").to_string()).collect(),
                        codes: if identity {
                            keys.to_vec()
                        } else {
                            kept.iter().map(|&r| keys[r as usize]).collect()
                        },
                    })
                }
                (FieldType::Str, _) => {
                    let mut index: HashMap<Arc<str>, u32> = HashMap::new();
                    let mut dict = Vec::new();
                    let codes = slow()
                        .map(|v| {
                            let Value::Str(s) = v else {
                                unreachable!("checked above")
                            };
                            *index.entry(s.clone()).or_insert_with(|| {
                                dict.push(s.to_string());
                                dict.len() as u32 - 1
                            })
                        })
                        .collect();
                    wit::Column::Str(wit::DictColumn { dict, codes })
                }
            }
        })
        .collect();
    Converted {
        batch: wit::Batch {
            rows: kept.len() as u32,
            columns: out,
        },
        kept,
        rejected,
    }
}

/// A column returned by a plugin as an array; `rows` is how many values it must have.
pub fn from_wit(column: wit::Column, rows: usize, field: &FieldSpec) -> Result<ArrayRef, String> {
    let len = match &column {
        wit::Column::Float(v) => v.len(),
        wit::Column::Int(v) => v.len(),
        wit::Column::Boolean(v) => v.len(),
        wit::Column::Str(d) => d.codes.len(),
    };
    if len != rows {
        return Err(format!(
            "output `{}` has {len} values for {rows} rows",
            field.name
        ));
    }
    let found = match &column {
        wit::Column::Float(_) => FieldType::Float,
        wit::Column::Int(_) => FieldType::Int,
        wit::Column::Boolean(_) => FieldType::Boolean,
        wit::Column::Str(_) => FieldType::Str,
    };
    if found != field.ty {
        return Err(format!(
            "output `{}` is declared {:?} but the plugin returned {:?} values",
            field.name, field.ty, found
        ));
    }
    Ok(match column {
        wit::Column::Float(v) => column::floats(v),
        wit::Column::Int(v) => column::ints(v),
        wit::Column::Boolean(v) => column::bools(v),
        wit::Column::Str(d) => {
            if let Some(c) = d.codes.iter().find(|&&c| c as usize >= d.dict.len()) {
                return Err(format!(
                    "output `{}` has string code {c} but a dictionary of {}",
                    field.name,
                    d.dict.len()
                ));
            }
            column::strings(&d.dict, d.codes).expect("codes checked")
        }
    })
}

/// A result column that may hold nulls (ABI 0.2) as an array; `rows` is how many values it must have.
pub fn from_wit_nullable(
    column: wit::NullableColumn,
    rows: usize,
    field: &FieldSpec,
) -> Result<ArrayRef, String> {
    let wit::NullableColumn { mut values, valid } = column;
    let Some(valid) = valid else {
        return from_wit(values, rows, field);
    };
    if valid.len() != rows {
        return Err(format!(
            "output `{}` has {} validity flags for {rows} rows",
            field.name,
            valid.len()
        ));
    }
    // A null row's string code is a placeholder the plugin need not keep inside its dictionary.
    if let wit::Column::Str(d) = &mut values {
        for (code, ok) in d.codes.iter_mut().zip(&valid) {
            if !ok {
                *code = 0;
            }
        }
        if d.dict.is_empty() {
            d.dict.push(String::new());
        }
    }
    let array = from_wit(values, rows, field)?;
    let data = array
        .into_data()
        .into_builder()
        .nulls(Some(arrow_buffer::NullBuffer::from(valid)))
        .build()
        .map_err(|e| format!("output `{}`: {e}", field.name))?;
    Ok(arrow_array::make_array(data))
}

/// Why a plugin's declared outputs cannot be written, if they cannot: an empty or repeated name, or a
/// name the stage writes itself (`reserved`, like a window's bounds and key).
pub fn check_outputs(outputs: &[FieldSpec], reserved: &[&str]) -> Result<(), String> {
    for (i, f) in outputs.iter().enumerate() {
        if f.name.trim().is_empty() {
            return Err(format!(
                "the plugin declares an output with an empty name (output {}); every output needs a name",
                i + 1
            ));
        }
        if outputs[..i].iter().any(|g| g.name == f.name) {
            return Err(format!(
                "the plugin declares the output `{}` twice; each output needs its own name",
                f.name
            ));
        }
        if reserved.contains(&&*f.name) {
            return Err(format!(
                "the plugin's output `{}` would overwrite the stage's own `{}` field; the plugin must name it differently",
                f.name, f.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Origin};

    fn batch() -> Batch {
        let mut b = BatchBuilder::default();
        let genre: Arc<str> = "Rock".into();
        for (i, streams) in [
            Value::Float(1.5),
            Value::Int(2),
            Value::Str("x".into()),
            Value::Null,
        ]
        .into_iter()
        .enumerate()
        {
            b.push(
                i as i64,
                Origin::default(),
                [
                    ("genre".into(), Value::Str(genre.clone())),
                    ("streams".into(), streams),
                ],
            );
        }
        b.take()
    }

    #[test]
    fn passes_declared_fields_and_rejects_misfits() {
        let fields = [
            FieldSpec {
                name: "streams".into(),
                ty: FieldType::Float,
            },
            FieldSpec {
                name: "genre".into(),
                ty: FieldType::Str,
            },
        ];
        let c = to_wit(&batch(), &fields, None);
        assert_eq!(c.kept, [0, 1]);
        assert_eq!(
            c.rejected[0],
            (
                2,
                "field `streams` must be a number, found a string".to_string()
            )
        );
        assert_eq!(c.rejected[1], (3, "missing field `streams`".to_string()));
        let wit::Column::Float(v) = &c.batch.columns[0] else {
            panic!()
        };
        assert_eq!(v, &[1.5, 2.0]);
        let wit::Column::Str(d) = &c.batch.columns[1] else {
            panic!()
        };
        assert_eq!((d.dict.len(), d.codes.as_slice()), (1, &[0, 0][..]));
    }

    #[test]
    fn nullable_columns_become_arrays_with_nulls() {
        let f = |name: &str, ty| FieldSpec {
            name: name.into(),
            ty,
        };
        let floats = from_wit_nullable(
            wit::NullableColumn {
                values: wit::Column::Float(vec![1.0, 0.0, 3.0]),
                valid: Some(vec![true, false, true]),
            },
            3,
            &f("x", FieldType::Float),
        )
        .unwrap();
        assert_eq!(
            (0..3)
                .map(|r| column::value(&floats, r))
                .collect::<Vec<_>>(),
            [Value::Float(1.0), Value::Null, Value::Float(3.0)]
        );
        // A null string may carry any code, even with an empty dictionary.
        let strings = from_wit_nullable(
            wit::NullableColumn {
                values: wit::Column::Str(wit::DictColumn {
                    dict: vec![],
                    codes: vec![7],
                }),
                valid: Some(vec![false]),
            },
            1,
            &f("s", FieldType::Str),
        )
        .unwrap();
        assert_eq!(column::value(&strings, 0), Value::Null);
        let e = from_wit_nullable(
            wit::NullableColumn {
                values: wit::Column::Int(vec![1, 2]),
                valid: Some(vec![true]),
            },
            2,
            &f("n", FieldType::Int),
        )
        .unwrap_err();
        assert!(e.contains("1 validity flags for 2 rows"), "{e}");
    }

    #[test]
    fn checks_plugin_output_shape() {
        let f = FieldSpec {
            name: "avg".into(),
            ty: FieldType::Float,
        };
        assert!(from_wit(wit::Column::Float(vec![1.0]), 2, &f)
            .unwrap_err()
            .contains("1 values for 2 rows"));
        let bad = wit::Column::Str(wit::DictColumn {
            dict: vec![],
            codes: vec![0],
        });
        assert!(from_wit(bad, 1, &f).is_err());
        let strings = wit::Column::Str(wit::DictColumn {
            dict: vec!["x".into()],
            codes: vec![0],
        });
        assert!(from_wit(strings, 1, &f)
            .unwrap_err()
            .contains("declared Float but the plugin returned Str values"));
    }
}
