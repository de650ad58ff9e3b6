//! Host batches ↔ the ABI's columns. Only the fields a plugin declared cross the boundary; a record
//! whose value does not fit the declared type is set aside with a reason instead of being passed.

use super::bindings::types as wit;
use crate::record::{Batch, Value};
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

/// The declared fields of the rows in `rows` (or of all rows), as ABI columns. Rows that do not fit
/// are left out and returned with their reason; `kept` lists the rows passed, in order.
pub struct Converted {
    pub batch: wit::Batch,
    pub kept: Vec<u32>,
    pub rejected: Vec<(usize, String)>,
}

pub fn to_wit(batch: &Batch, fields: &[FieldSpec], rows: Option<&[u32]>) -> Converted {
    let all: Vec<u32>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = (0..batch.len as u32).collect();
            &all
        }
    };
    let null_column = vec![Value::Null; batch.len];
    let columns: Vec<&[Value]> = fields
        .iter()
        .map(|f| {
            batch
                .column(&f.name)
                .map_or(&null_column[..], |c| &c.values[..])
        })
        .collect();

    let mut rejected = Vec::new();
    let mut kept = Vec::with_capacity(rows.len());
    'rows: for &r in rows {
        for (f, col) in fields.iter().zip(&columns) {
            if let Some(reason) = reject(f, &col[r as usize]) {
                rejected.push((r as usize, reason));
                continue 'rows;
            }
        }
        kept.push(r);
    }

    let out = fields
        .iter()
        .zip(&columns)
        .map(|(f, col)| {
            let values = kept.iter().map(|&r| &col[r as usize]);
            match f.ty {
                FieldType::Float => {
                    wit::Column::Float(values.map(|v| v.as_f64().unwrap()).collect())
                }
                FieldType::Int => wit::Column::Int(
                    values
                        .map(|v| match v {
                            Value::Int(i) | Value::Time(i) => *i,
                            Value::Float(x) => *x as i64,
                            _ => unreachable!("checked above"),
                        })
                        .collect(),
                ),
                FieldType::Boolean => {
                    wit::Column::Boolean(values.map(|v| matches!(v, Value::Bool(true))).collect())
                }
                FieldType::Str => {
                    // Equal strings usually share one allocation (interned at decode), so the pointer
                    // is a cheap first key; equal text behind another pointer just gets its own entry.
                    let mut index: HashMap<*const u8, u32> = HashMap::new();
                    let mut dict = Vec::new();
                    let codes = values
                        .map(|v| {
                            let Value::Str(s) = v else {
                                unreachable!("checked above")
                            };
                            *index.entry(s.as_ptr()).or_insert_with(|| {
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

/// A column returned by a plugin as host values; `rows` is how many it must have.
pub fn from_wit(column: wit::Column, rows: usize, field: &FieldSpec) -> Result<Vec<Value>, String> {
    let values: Vec<Value> = match column {
        wit::Column::Float(v) => v.into_iter().map(Value::Float).collect(),
        wit::Column::Int(v) => v.into_iter().map(Value::Int).collect(),
        wit::Column::Boolean(v) => v.into_iter().map(Value::Bool).collect(),
        wit::Column::Str(d) => {
            let dict: Vec<Arc<str>> = d.dict.into_iter().map(Arc::from).collect();
            d.codes
                .into_iter()
                .map(|c| {
                    dict.get(c as usize)
                        .cloned()
                        .map(Value::Str)
                        .ok_or_else(|| {
                            format!(
                                "output `{}` has string code {c} but a dictionary of {}",
                                field.name,
                                dict.len()
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        }
    };
    if values.len() != rows {
        return Err(format!(
            "output `{}` has {} values for {rows} rows",
            field.name,
            values.len()
        ));
    }
    Ok(values)
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
    }
}
