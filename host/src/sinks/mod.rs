//! Sinks: where results leave a pipeline. One file per `type`; the list is in `topology::registry`.

pub mod blackhole;
pub mod chart;
pub mod console;
pub mod file;
pub mod mongodb;

use crate::record::{Batch, Value};

/// Rows ranked for display: sorted by `sort_by` (descending unless asked), cut to `top`.
pub(crate) fn ranked(
    rows: &[Vec<(std::sync::Arc<str>, Value)>],
    sort_by: Option<&str>,
    ascending: bool,
    top: Option<usize>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if let Some(field) = sort_by {
        let get = |i: usize| {
            rows[i]
                .iter()
                .find(|(n, _)| &**n == field)
                .and_then(|(_, v)| v.as_f64())
                .unwrap_or(f64::NEG_INFINITY)
        };
        // Stable, and ties keep arrival order, so output is deterministic.
        order.sort_by(|&a, &b| {
            let o = get(b).total_cmp(&get(a));
            if ascending {
                o.reverse()
            } else {
                o
            }
        });
    }
    if let Some(n) = top {
        order.truncate(n);
    }
    order
}

/// A batch as rows of (field, value), for sinks that buffer until the end.
pub(crate) fn rows_of(
    batch: &Batch,
) -> impl Iterator<Item = Vec<(std::sync::Arc<str>, Value)>> + '_ {
    (0..batch.len).map(move |r| {
        batch
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.value(r)))
            .collect()
    })
}
