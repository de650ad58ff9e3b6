//! What tributary stores in each partition's commit metadata, a small JSON object:
//! - with checkpoints (every source resumes), the checkpoint the offsets belong to:
//!   `{"v":1,"checkpoint":12}`, so a restart that cannot find it says so instead of resuming without
//!   the window state those offsets rely on;
//! - without, the window watermarks, so a restart with `start = "committed"` knows which windows were
//!   emitted before it (see [`Progress`](crate::topology::Progress)):
//!   `{"v":1,"watermarks":{"avg_by_genre_1m":1717243320000}}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The broker's default `offset.metadata.max.bytes`: a commit with longer metadata is refused.
pub const MAX_METADATA_BYTES: usize = 4096;

const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {
    v: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    watermarks: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<u64>,
}

/// The metadata naming the checkpoint a commit belongs to.
pub fn encode_checkpoint(id: u64) -> String {
    serde_json::to_string(&Metadata {
        v: VERSION,
        checkpoint: Some(id),
        ..Metadata::default()
    })
    .expect("metadata serialises")
}

/// The checkpoint a partition's commit belongs to, if it names one.
pub fn checkpoint(text: &str) -> Option<u64> {
    serde_json::from_str::<Metadata>(text).ok()?.checkpoint
}

/// Commit metadata tributary cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("commit metadata is not tributary's watermark json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("commit metadata has version {0}; this tributary reads version {VERSION}")]
    Version(u32),
}

/// The metadata for a commit: empty without watermarks; `None` when it would exceed
/// [`MAX_METADATA_BYTES`] (many or long stage names), since the broker would refuse the whole commit.
pub fn encode(watermarks: &BTreeMap<String, i64>) -> Option<String> {
    if watermarks.is_empty() {
        return Some(String::new());
    }
    let text = serde_json::to_string(&Metadata {
        v: VERSION,
        watermarks: watermarks.clone(),
        checkpoint: None,
    })
    .expect("watermarks serialise");
    (text.len() <= MAX_METADATA_BYTES).then_some(text)
}

/// The watermarks in one partition's commit metadata; none where it is empty (no window had written
/// results, or an older tributary committed).
pub fn decode(text: &str) -> Result<BTreeMap<String, i64>, MetadataError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let m: Metadata = serde_json::from_str(text)?;
    if m.v != VERSION {
        return Err(MetadataError::Version(m.v));
    }
    Ok(m.watermarks)
}

/// One watermark per stage from the partitions' metadata. Partitions commit at different times (only
/// those whose offset moved, except at the end), so they may disagree: each value is a watermark whose
/// results were written, so any is correct, and the lowest is the cautious choice (fewer records read
/// again are taken for emitted). A stage missing from some partitions takes the lowest of the others.
pub fn merge(parts: impl IntoIterator<Item = BTreeMap<String, i64>>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for part in parts {
        for (stage, wm) in part {
            let w = out.entry(stage).or_insert(wm);
            *w = (*w).min(wm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_what_it_cannot_read() {
        let wm = BTreeMap::from([
            ("avg_by_genre_1m".to_string(), 1_717_243_320_000),
            ("early".to_string(), -5),
        ]);
        let text = encode(&wm).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"watermarks":{"avg_by_genre_1m":1717243320000,"early":-5}}"#
        );
        assert_eq!(decode(&text).unwrap(), wm);
        assert_eq!(checkpoint(&text), None);
        let text = encode_checkpoint(12);
        assert_eq!(text, r#"{"v":1,"checkpoint":12}"#);
        assert_eq!(checkpoint(&text), Some(12));
        assert!(
            decode(&text).unwrap().is_empty(),
            "no watermarks with a checkpoint"
        );
        assert_eq!(encode(&BTreeMap::new()).unwrap(), "");
        assert!(
            decode("").unwrap().is_empty(),
            "no metadata: nothing to restore"
        );
        let e = decode(r#"{"v":2,"watermarks":{}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "commit metadata has version 2; this tributary reads version 1"
        );
        assert!(matches!(
            decode("written by another tool"),
            Err(MetadataError::Json(_))
        ));
    }

    #[test]
    fn too_long_metadata_is_dropped() {
        let wm: BTreeMap<String, i64> = (0..200)
            .map(|i| (format!("a_rather_long_window_stage_name_{i}"), i64::MAX))
            .collect();
        assert_eq!(encode(&wm), None);
    }

    #[test]
    fn partitions_that_disagree_give_the_lowest() {
        let merged = merge([
            BTreeMap::from([("a".to_string(), 120), ("b".to_string(), 7)]),
            BTreeMap::new(),
            BTreeMap::from([("a".to_string(), 60)]),
        ]);
        assert_eq!(
            merged,
            BTreeMap::from([("a".to_string(), 60), ("b".to_string(), 7)])
        );
    }
}
