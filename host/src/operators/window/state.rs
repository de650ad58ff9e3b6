//! A window stage's state in a checkpoint: the watermark, the newest event time, and every open pane
//! (window bounds, key, whether it fired, and the plugin's `save` bytes for its accumulator). Due and
//! expiry schedules and session lists are rebuilt from the panes.
//!
//! The JSON is compact on purpose (one array per pane, bytes in hex): a 1-minute window over a busy
//! topic holds tens of thousands of panes, saved every checkpoint interval.

use super::{Accumulators, Pane, WindowKind, Windows};
use crate::plugin::PluginError;
use crate::record::{Key, Value};
use serde_json::{json, Value as Json};

const VERSION: u64 = 1;

/// A key as JSON that keeps its type: the string `"1"`, the integer `1` and the float `1.0` are three
/// keys, and a float keeps its exact bits.
fn key_to_json(key: &Key) -> Json {
    match &key.0 {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(["b", b]),
        Value::Int(i) => json!(["i", i]),
        Value::Float(f) => json!(["f", f.to_bits()]),
        Value::Str(s) => json!(["s", &**s]),
        Value::Time(t) => json!(["t", t]),
        Value::Json(j) => json!(["j", &**j]),
    }
}

fn key_from_json(j: &Json) -> Option<Key> {
    if j.is_null() {
        return Some(Key(Value::Null));
    }
    let [tag, v] = j.as_array()?.as_slice() else {
        return None;
    };
    Some(Key(match tag.as_str()? {
        "b" => Value::Bool(v.as_bool()?),
        "i" => Value::Int(v.as_i64()?),
        "f" => Value::Float(f64::from_bits(v.as_u64()?)),
        "s" => Value::Str(v.as_str()?.into()),
        "t" => Value::Time(v.as_i64()?),
        "j" => Value::Json(v.as_str()?.into()),
        _ => return None,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a checkpoint's window state cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the checkpoint's window state is not readable ({0}); move the checkpoint directory away to start over")]
    Format(String),
    #[error("the plugin refused a saved accumulator: {0}")]
    Plugin(#[from] PluginError),
}

impl<A: Accumulators> Windows<A> {
    /// The state to checkpoint: open panes with their accumulators, in a deterministic order.
    pub fn save(&mut self) -> Result<Json, PluginError> {
        let mut panes: Vec<(&(i64, super::KeyId), &Pane)> = self.panes.iter().collect();
        let keys = &self.keys;
        panes.sort_by(|a, b| (a.0 .0, keys.key(a.0 .1)).cmp(&(b.0 .0, keys.key(b.0 .1))));
        let mut out = Vec::with_capacity(panes.len());
        for ((start, key), pane) in panes {
            let bytes = self.acc.save(pane.slot)?;
            out.push(json!([
                start,
                pane.end,
                key_to_json(self.keys.key(*key)),
                pane.fired,
                pane.rows,
                hex(&bytes)
            ]));
        }
        Ok(json!({
            "v": VERSION,
            "watermark": self.watermark,
            "max_time": self.max_time,
            "panes": out,
        }))
    }

    /// Loads a state from [`Windows::save`] into a stage that has not seen a record yet.
    pub fn load(&mut self, state: &Json) -> Result<(), StateError> {
        let bad = |what: &str| StateError::Format(what.to_string());
        if state.get("v").and_then(Json::as_u64) != Some(VERSION) {
            return Err(bad("unknown version"));
        }
        let int = |name: &str| {
            state
                .get(name)
                .and_then(Json::as_i64)
                .ok_or_else(|| bad(name))
        };
        self.watermark = int("watermark")?;
        self.max_time = int("max_time")?;
        let lateness = self.settings.allowed_lateness;
        let panes = state
            .get("panes")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("panes"))?;
        for p in panes {
            let parse = || -> Option<(i64, i64, Key, bool, u64, Vec<u8>)> {
                let [start, end, key, fired, rows, bytes] = p.as_array()?.as_slice() else {
                    return None;
                };
                Some((
                    start.as_i64()?,
                    end.as_i64()?,
                    key_from_json(key)?,
                    fired.as_bool()?,
                    rows.as_u64()?,
                    unhex(bytes.as_str()?)?,
                ))
            };
            let (start, end, key, fired, rows, bytes) = parse().ok_or_else(|| bad("a pane"))?;
            let key = self.keys.id(key);
            self.keys.acquire(key);
            let slot = self.alloc();
            self.acc.load(slot, &bytes)?;
            self.panes.insert(
                (start, key),
                Pane {
                    end,
                    slot,
                    fired,
                    rows,
                    acks: Vec::new(),
                },
            );
            if !fired {
                self.due.insert(end, start, key);
            }
            self.expiry.insert(end.saturating_add(lateness), start, key);
            if matches!(self.settings.kind, WindowKind::Session { .. }) {
                self.sessions.entry(key).or_default().push(start);
            }
        }
        self.keys.sweep();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_type_and_bits() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(1),
            Value::Float(1.0),
            Value::Float(-0.0),
            Value::Str("1".into()),
            Value::Time(60_000),
            Value::Json("[1]".into()),
        ] {
            let k = Key(v);
            assert_eq!(key_from_json(&key_to_json(&k)), Some(k.clone()), "{k:?}");
        }
        assert_eq!(key_from_json(&json!(["x", 1])), None);
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
    }
}
