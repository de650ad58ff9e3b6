//! `type = "file"`: writes records as JSON Lines.

use crate::outfile::{self, OutputMode};
use crate::record::{column, Batch};
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, TimestampMillisecondArray, UInt32Array,
};
use arrow_schema::{DataType, TimeUnit};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use toml::Spanned;

/// Writes each record as one JSON object a line; window bounds are written as RFC 3339 text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The output file, relative to the pipeline file; its directory is created.
    pub path: Spanned<PathBuf>,
    /// `"truncate"`: start the file afresh; `"append"`: write after what earlier runs wrote (a torn
    /// last line left by a crash is removed first). Default: append when a source resumes from
    /// committed offsets (`start = "committed"`), truncate otherwise.
    pub mode: Option<OutputMode>,
}

impl StageConfig for FileConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        if self.path.get_ref().as_os_str().is_empty() {
            return Err(BuildError::new(
                Some(self.path.span()),
                "`path` is empty; name the output file",
            ));
        }
        Ok(Built::Sink(Box::new(FileSink {
            stage: ctx.stage.to_string(),
            path: ctx.path(self.path.get_ref()),
            mode: self
                .mode
                .unwrap_or(OutputMode::default_for(ctx.pipeline.resumes())),
            out: None,
        })))
    }
}

pub struct FileSink {
    stage: String,
    path: PathBuf,
    mode: OutputMode,
    out: Option<BufWriter<File>>,
}

impl FileSink {
    fn io(&self, e: std::io::Error) -> StageError {
        StageError::with(format!("cannot write `{}`", self.path.display()), e)
    }
}

impl Sink for FileSink {
    fn open(&mut self) -> Result<(), StageError> {
        let (file, torn) = outfile::open(&self.path, self.mode).map_err(|e| self.io(e))?;
        if torn > 0 {
            eprintln!(
                "warning: removed a torn last line ({torn} bytes, left by a crash) from `{}`",
                self.path.display()
            );
        }
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        let mut lines = Vec::with_capacity(batch.len * 128);
        write_jsonl(batch, &mut lines);
        let out = self.out.as_mut().expect("opened");
        // Flushed per batch: once `write` returns, the rows are in the file, so the batch's progress
        // tokens may let the source commit (a live run's rows also show up as windows close).
        out.write_all(&lines)
            .and_then(|()| out.flush())
            .map_err(|e| self.io(e))
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), StageError> {
        let r = self.out.as_mut().map_or(Ok(()), |o| o.flush());
        r.map_err(|e| self.io(e))
    }

    /// The rows so far are on disk; a restart from this checkpoint cuts the file back to this length,
    /// because it computes what came after again (so each result is in the file once).
    fn checkpoint(&mut self, _: &mut Output) -> Result<Option<serde_json::Value>, StageError> {
        self.initial()
    }

    fn initial(&mut self) -> Result<Option<serde_json::Value>, StageError> {
        let out = self.out.as_mut().expect("opened");
        let len = out
            .flush()
            .and_then(|()| out.get_ref().sync_data())
            .and_then(|()| out.get_mut().stream_position());
        let len = len.map_err(|e| self.io(e))?;
        Ok(Some(
            serde_json::json!({ "path": self.path.display().to_string(), "len": len }),
        ))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        let Some(len) = state.get("len").and_then(serde_json::Value::as_u64) else {
            return Err(StageError::msg(
                "the checkpoint's file state has no `len`; move the checkpoint directory away to start over",
            ));
        };
        let path = self.path.display().to_string();
        if state.get("path").and_then(serde_json::Value::as_str) != Some(path.as_str()) {
            // `path` changed since the checkpoint: the file there is not the one it describes.
            return Ok(());
        }
        let file = self.out.as_mut().expect("opened").get_mut();
        let now = file.metadata().map_err(|e| self.io(e))?.len();
        if now > len {
            let file = self.out.as_mut().expect("opened").get_mut();
            file.set_len(len)
                .and_then(|()| file.seek(SeekFrom::Start(len)).map(drop))
                .map_err(|e| self.io(e))?;
            eprintln!(
                "tributary: stage `{}`: cut `{}` back to the {len} bytes it had at the checkpoint (or at the start of a run stopped before its first); the {} bytes after it are computed and written again",
                self.stage,
                self.path.display(),
                now - len
            );
        } else if now < len && self.mode == OutputMode::Append {
            eprintln!(
                "warning: stage `{}`: `{}` is shorter ({now} bytes) than at the checkpoint ({len} bytes); was it moved or edited? writing on after what it holds",
                self.stage,
                self.path.display()
            );
        }
        Ok(())
    }
}

/// How one column's cells are written, prepared once per batch.
enum Writer<'a> {
    Float(&'a Float64Array),
    Int(&'a Int64Array),
    Bool(&'a BooleanArray),
    /// With the last time written and its text.
    Time(&'a TimestampMillisecondArray, Option<i64>, Vec<u8>),
    /// Each dictionary string escaped once, then copied per row.
    Str(&'a UInt32Array, Vec<Vec<u8>>),
    /// JSON-text and all-null columns: through [`Value`], cell by cell.
    Other(&'a dyn Array),
}

/// The batch as JSON Lines: one object per row, fields in column order, null fields included.
pub fn write_jsonl(batch: &Batch, out: &mut Vec<u8>) {
    let json = |s: &str| serde_json::to_vec(s).expect("strings serialise");
    let mut columns: Vec<(Vec<u8>, Writer)> = batch
        .columns
        .iter()
        .map(|c| {
            let a = c.array.as_ref();
            let w = match a.data_type() {
                DataType::Float64 => Writer::Float(a.as_primitive()),
                DataType::Int64 => Writer::Int(a.as_primitive()),
                DataType::Boolean => Writer::Bool(a.as_boolean()),
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    Writer::Time(a.as_primitive(), None, Vec::new())
                }
                DataType::Dictionary(_, _) => {
                    let d = a.as_dictionary::<UInt32Type>();
                    let dict = d.values().as_string::<i32>();
                    Writer::Str(
                        d.keys(),
                        dict.iter().map(|s| json(s.unwrap_or(""))).collect(),
                    )
                }
                _ => Writer::Other(a),
            };
            let mut name = json(&c.name);
            name.push(b':');
            (name, w)
        })
        .collect();
    let (mut floats, mut ints) = (zmij::Buffer::new(), itoa::Buffer::new());
    for row in 0..batch.len {
        out.push(b'{');
        for (i, (name, w)) in columns.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            let at = out.len();
            let null = match w {
                Writer::Float(a) => {
                    let f = a.value(row);
                    let ok = a.is_valid(row) && f.is_finite();
                    if ok {
                        out.extend_from_slice(floats.format_finite(f).as_bytes());
                    }
                    !ok
                }
                Writer::Int(a) => {
                    out.extend_from_slice(ints.format(a.value(row)).as_bytes());
                    a.is_null(row)
                }
                Writer::Bool(a) => {
                    out.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
                    a.is_null(row)
                }
                Writer::Time(a, last, text) => {
                    // Rows of one window share its bounds: format each distinct time once.
                    let ms = a.value(row);
                    if *last != Some(ms) {
                        text.clear();
                        text.push(b'"');
                        crate::record::write_rfc3339(ms, text);
                        text.push(b'"');
                        *last = Some(ms);
                    }
                    out.extend_from_slice(text);
                    a.is_null(row)
                }
                Writer::Str(keys, dict) => {
                    out.extend_from_slice(&dict[keys.value(row) as usize]);
                    keys.is_null(row)
                }
                Writer::Other(a) => {
                    let v = column::value(*a, row).to_json();
                    serde_json::to_writer(&mut *out, &v).expect("JSON values serialise");
                    false
                }
            };
            if null {
                // Cheaper to write and take back than to test every cell first: nulls are rare.
                out.truncate(at);
                out.extend_from_slice(b"null");
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Origin, Value};
    use std::sync::Arc;

    #[test]
    fn lines_match_serde_json_for_every_column_type() {
        let mut b = BatchBuilder::default();
        let rows: [Vec<(&str, Value)>; 3] = [
            vec![
                ("g", Value::Str("Jazz \"cool\"\n".into())),
                ("f", Value::Float(19.0)),
                ("i", Value::Int(-3)),
                ("b", Value::Bool(true)),
                ("t", Value::Time(1_717_243_260_123)),
                ("m", Value::Int(1)),
            ],
            vec![("f", Value::Float(f64::NAN)), ("m", Value::Str("x".into()))],
            vec![
                ("g", Value::Str("é".into())),
                ("f", Value::Float(1e-7)),
                ("m", Value::Json("[1,{\"a\":2}]".into())),
            ],
        ];
        for r in &rows {
            b.push(
                0,
                Origin::default(),
                r.iter().map(|(n, v)| (Arc::from(*n), v.clone())),
            );
        }
        let batch = b.take();
        let mut out = Vec::new();
        write_jsonl(&batch, &mut out);
        let expected: String = (0..batch.len)
            .map(|row| {
                let object: serde_json::Map<String, serde_json::Value> = batch
                    .columns
                    .iter()
                    .map(|c| (c.name.to_string(), c.value(row).to_json()))
                    .collect();
                format!("{}\n", serde_json::Value::Object(object))
            })
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
