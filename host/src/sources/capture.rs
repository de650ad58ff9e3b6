//! The capture format, shared by `replay`, `record` and the Kafka source: one Kafka record per JSON line,
//! `{"topic", "partition", "offset", "timestamp" (ms), "key" (string or null), "value" (payload text)}`.
//! The payload is a JSON object whose fields become the record's fields.

use crate::record::{Interner, Value};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// One line of a capture.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct CaptureLine<'a> {
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    #[serde(borrow)]
    pub key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
}

/// Reads a capture line; the error says what is wrong with it.
pub fn parse_line(line: &str) -> Result<CaptureLine<'_>, String> {
    serde_json::from_str(line).map_err(|e| format!("invalid capture line: {e}"))
}

/// Decodes a payload into fields. Live Kafka records go through this same function, so a live run and a
/// replay of the same records see identical records.
pub fn decode_payload(
    payload: &str,
    interner: &mut Interner,
) -> Result<Vec<(Arc<str>, Value)>, String> {
    let value: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| format!("record value is not valid JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!(
            "record value must be a JSON object, found {}",
            json_kind(&value)
        ));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (interner.intern(&k), Value::from_json(v, interner)))
        .collect())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_lines_and_payloads() {
        let line = r#"{"topic":"t","partition":0,"offset":3,"timestamp":1717243200000,"key":"k","value":"{\"genre\":\"Rock\",\"streams\":19.36,\"year\":1975}"}"#;
        let l = parse_line(line).unwrap();
        assert_eq!(
            (l.partition, l.offset, l.timestamp, l.key.as_deref()),
            (0, 3, 1717243200000, Some("k"))
        );
        let fields = decode_payload(&l.value, &mut Interner::default()).unwrap();
        assert_eq!(fields.len(), 3);
        assert!(fields.contains(&("streams".into(), Value::Float(19.36))));
        assert!(fields.contains(&("year".into(), Value::Int(1975))));
    }

    #[test]
    fn explains_bad_input() {
        assert!(parse_line("nope")
            .unwrap_err()
            .starts_with("invalid capture line"));
        let missing = r#"{"topic":"t","partition":0,"offset":3,"key":null,"value":"{}"}"#;
        assert!(parse_line(missing)
            .unwrap_err()
            .contains("missing field `timestamp`"));
        let mut i = Interner::default();
        assert!(decode_payload("{\"streams\":NaN}", &mut i)
            .unwrap_err()
            .starts_with("record value is not valid JSON"));
        assert!(decode_payload("[1]", &mut i)
            .unwrap_err()
            .contains("must be a JSON object, found an array"));
    }
}
