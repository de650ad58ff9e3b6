//! Records as BSON documents, their `_id`, and connection strings with their secrets hidden.

use super::*;

/// A record as a document: its fields in column order, typed. A null field is left out (a record
/// without a field holds null only because others in its batch have it), except a key field, which is
/// always written so the document shows its whole key.
pub fn to_document(batch: &Batch, row: usize, key_fields: &[String]) -> Document {
    let mut d = Document::new();
    for c in &batch.columns {
        let v = c.value(row);
        if v == Value::Null && !key_fields.iter().any(|k| **k == *c.name) {
            continue;
        }
        d.insert(c.name.to_string(), to_bson(&v));
    }
    d
}

/// A value as BSON: timestamps as dates, integers as 64-bit, JSON values as sub-documents or arrays.
pub fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Int(i) => Bson::Int64(*i),
        Value::Float(f) => Bson::Double(*f),
        Value::Str(s) => Bson::String(s.to_string()),
        Value::Time(ms) => Bson::DateTime(DateTime::from_millis(*ms)),
        Value::Json(text) => match serde_json::from_str(text) {
            Ok(json) => json_to_bson(json),
            Err(_) => Bson::String(text.to_string()),
        },
    }
}

/// Plain JSON (not Extended JSON: a `$date` key in user data stays a key) as BSON.
pub(super) fn json_to_bson(v: serde_json::Value) -> Bson {
    match v {
        serde_json::Value::Null => Bson::Null,
        serde_json::Value::Bool(b) => Bson::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Bson::String(s),
        serde_json::Value::Array(a) => Bson::Array(a.into_iter().map(json_to_bson).collect()),
        serde_json::Value::Object(o) => {
            Bson::Document(o.into_iter().map(|(k, v)| (k, json_to_bson(v))).collect())
        }
    }
}

/// A document's `_id`: its key fields as canonical Extended JSON text, in `key_fields` order, like
/// `{"window_start":{"$date":{"$numberLong":"1717243200000"}},"window_end":…,"genre":"Rock"}`. Text
/// rather than a sub-document: servers find a string `_id` by their primary key (FerretDB 1.x scans its
/// whole table for a sub-document `_id`), and the text keeps the key readable.
pub fn document_id(key: &Document) -> String {
    serde_json::to_string(&Bson::Document(key.clone()).into_canonical_extjson())
        .expect("JSON serialises")
}

/// The filter selecting a document's key; a field it lacks matches null, as stored.
pub(super) fn key_filter(d: &Document, key_fields: &[String]) -> Document {
    key_fields
        .iter()
        .map(|f| (f.clone(), d.get(f).cloned().unwrap_or(Bson::Null)))
        .collect()
}

/// The connection string for messages: the password and secret-bearing options become `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "<not a connection string>".into();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => main.to_string(),
    };
    let mut out = format!("{scheme}://{main}");
    if let Some(q) = query {
        let opts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_option(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&opts.join("&"));
    }
    out
}

pub(super) fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k == "authmechanismproperties"
}

/// The secrets of a connection string, as written and percent-decoded, longest first.
pub(super) fn uri_secrets(uri: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, rest)) = uri.split_once("://") else {
        return vec![uri.to_string()];
    };
    let (main, query) = rest
        .split_once('?')
        .map_or((rest, None), |(m, q)| (m, Some(q)));
    if let Some((userinfo, _)) = main.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            out.push(password.to_string());
        }
    }
    for kv in query.into_iter().flat_map(|q| q.split('&')) {
        if let Some((k, v)) = kv.split_once('=') {
            if is_secret_option(k) {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `***`.
pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}
