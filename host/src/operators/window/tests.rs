//! Window assignment, watermarks, lateness and end-of-input flush, with a native stand-in for the plugin.

use super::*;
use crate::plugin::FieldType;
use crate::record::{BatchBuilder, Origin};

/// Sum and count of `v` per slot: what `sum` does, without WebAssembly.
#[derive(Default)]
struct SumCount {
    inputs: Vec<FieldSpec>,
    outputs: Vec<FieldSpec>,
    slots: Vec<(f64, i64)>,
    merges: usize,
}

impl SumCount {
    fn new() -> Self {
        SumCount {
            inputs: vec![FieldSpec {
                name: "v".into(),
                ty: FieldType::Float,
            }],
            outputs: vec![
                FieldSpec {
                    name: "sum".into(),
                    ty: FieldType::Float,
                },
                FieldSpec {
                    name: "count".into(),
                    ty: FieldType::Int,
                },
            ],
            ..Default::default()
        }
    }
    fn slot(&mut self, s: u32) -> &mut (f64, i64) {
        if self.slots.len() <= s as usize {
            self.slots.resize(s as usize + 1, (0.0, 0));
        }
        &mut self.slots[s as usize]
    }
}

impl Accumulators for SumCount {
    fn inputs(&self) -> &[FieldSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[FieldSpec] {
        &self.outputs
    }
    fn add(
        &mut self,
        slots: &[u32],
        input: &wit::Batch,
    ) -> Result<Vec<wit::RowError>, PluginError> {
        let wit::Column::Float(v) = &input.columns[0] else {
            panic!("float column")
        };
        assert_eq!(v.len(), slots.len());
        for (s, x) in slots.iter().zip(v) {
            let acc = self.slot(*s);
            acc.0 += x;
            acc.1 += 1;
        }
        Ok(Vec::new())
    }
    fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError> {
        let (sum, n) = *self.slot(slot);
        Ok([sum.to_le_bytes(), n.to_le_bytes()].concat())
    }
    fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError> {
        let sum = f64::from_le_bytes(state[..8].try_into().unwrap());
        let n = i64::from_le_bytes(state[8..16].try_into().unwrap());
        *self.slot(slot) = (sum, n);
        Ok(())
    }
    fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError> {
        self.merges += 1;
        let from = std::mem::take(self.slot(src));
        let to = self.slot(dst);
        to.0 += from.0;
        to.1 += from.1;
        Ok(())
    }
    fn finish(&mut self, panes: &PluginPanes) -> Result<Finished, PluginError> {
        let vals: Vec<(f64, i64)> = panes.slots.iter().map(|&s| *self.slot(s)).collect();
        Ok(Finished {
            rows: (0..panes.len() as u32).collect(),
            columns: vec![
                wit::NullableColumn {
                    values: wit::Column::Float(vals.iter().map(|v| v.0).collect()),
                    valid: None,
                },
                wit::NullableColumn {
                    values: wit::Column::Int(vals.iter().map(|v| v.1).collect()),
                    valid: None,
                },
            ],
        })
    }
    fn free(&mut self, slots: &[u32]) -> Result<(), PluginError> {
        for s in slots {
            *self.slot(*s) = (0.0, 0);
        }
        Ok(())
    }
    fn restart(&mut self) -> Result<(), PluginError> {
        self.slots.clear();
        Ok(())
    }
}

fn windows(kind: WindowKind, max_delay: i64, allowed_lateness: i64) -> Windows<SumCount> {
    let settings = Settings {
        kind,
        key: Some("k".into()),
        event_time: None,
        max_delay,
        allowed_lateness,
        max_future: 3_600_000,
    };
    Windows::new(settings, SumCount::new())
}

/// Records (time, key, value).
fn batch(records: &[(i64, &str, f64)]) -> Batch {
    let mut b = BatchBuilder::default();
    for (i, (t, k, v)) in records.iter().enumerate() {
        b.push(
            *t,
            Origin {
                partition: 0,
                offset: i as i64,
            },
            [
                ("k".into(), Value::Str((*k).into())),
                ("v".into(), Value::Float(*v)),
            ],
        );
    }
    b.take()
}

/// Result rows as (start, end, key, sum, count); global bounds are reported as (MIN, MAX).
fn rows(b: &Option<Batch>) -> Vec<(i64, i64, String, f64, i64)> {
    let Some(b) = b else { return Vec::new() };
    (0..b.len)
        .map(|r| {
            let t = |name: &str, default: i64| match b.value(name, r) {
                Value::Time(t) => t,
                _ => default,
            };
            let Value::Str(k) = b.value("k", r) else {
                panic!("key")
            };
            let Value::Float(sum) = b.value("sum", r) else {
                panic!("sum")
            };
            let Value::Int(count) = b.value("count", r) else {
                panic!("count")
            };
            (
                t("window_start", i64::MIN),
                t("window_end", i64::MAX),
                k.to_string(),
                sum,
                count,
            )
        })
        .collect()
}

#[test]
fn tumbling_windows_emit_when_the_watermark_passes_their_end() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let (out, rejected) = w
        .process(&batch(&[
            (1_000, "a", 1.0),
            (2_000, "b", 2.0),
            (59_999, "a", 3.0),
        ]))
        .unwrap();
    assert!(
        out.is_none(),
        "nothing is due before the watermark reaches 60s"
    );
    assert!(rejected.is_empty());
    let (out, _) = w.process(&batch(&[(60_000, "a", 10.0)])).unwrap();
    assert_eq!(
        rows(&out),
        [
            (0, 60_000, "a".into(), 4.0, 2),
            (0, 60_000, "b".into(), 2.0, 1)
        ]
    );
    let out = w.finish().unwrap();
    assert_eq!(rows(&out), [(60_000, 120_000, "a".into(), 10.0, 1)]);
}

#[test]
fn a_cleared_stage_computes_as_a_new_one() {
    let input = [(1_000, "a", 1.0), (70_000, "b", 2.0), (130_000, "a", 4.0)];
    let run = |w: &mut Windows<SumCount>| {
        let (out, _) = w.process(&batch(&input)).unwrap();
        let mut all = rows(&out);
        all.extend(rows(&w.finish().unwrap()));
        all
    };
    let mut fresh = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let want = run(&mut fresh);
    let mut used = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    used.process(&batch(&[(500_000, "c", 9.0), (10, "a", 5.0)]))
        .unwrap();
    used.clear().unwrap();
    assert_eq!(used.watermark(), i64::MIN);
    assert_eq!(
        run(&mut used),
        want,
        "no pane, key or watermark left from before"
    );
}

#[test]
fn max_delay_holds_windows_open_for_out_of_order_records() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 5_000, 0);
    let (out, _) = w
        .process(&batch(&[(59_000, "a", 1.0), (62_000, "a", 1.0)]))
        .unwrap();
    assert!(out.is_none(), "watermark is 57s");
    assert_eq!(w.watermark(), 57_000);
    // 58s is behind the newest record but not behind the watermark: it still counts in [0, 60s).
    let (out, rejected) = w
        .process(&batch(&[(58_000, "a", 1.0), (65_000, "a", 1.0)]))
        .unwrap();
    assert!(rejected.is_empty());
    assert_eq!(rows(&out), [(0, 60_000, "a".into(), 2.0, 2)]);
}

#[test]
fn late_records_are_rejected_with_reason() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    w.process(&batch(&[(70_000, "a", 1.0)])).unwrap();
    let (out, rejected) = w
        .process(&batch(&[(69_999, "a", 1.0), (70_000, "a", 1.0)]))
        .unwrap();
    assert!(out.is_none());
    assert_eq!(rejected.len(), 1);
    let (row, reason, late) = &rejected[0];
    assert_eq!((*row, *late), (0, true));
    assert!(
        reason.starts_with("late: event time is 1 ms behind the watermark"),
        "{reason}"
    );
}

#[test]
fn allowed_lateness_updates_an_emitted_window() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 10_000);
    let (out, _) = w
        .process(&batch(&[(1_000, "a", 1.0), (61_000, "a", 1.0)]))
        .unwrap();
    assert_eq!(rows(&out), [(0, 60_000, "a".into(), 1.0, 1)]);
    // Behind the watermark (61s) by 6s, within the 10s lateness: the window is emitted again, updated.
    let (out, rejected) = w.process(&batch(&[(55_000, "a", 2.0)])).unwrap();
    assert!(rejected.is_empty());
    assert_eq!(rows(&out), [(0, 60_000, "a".into(), 3.0, 2)]);
    // Past end + lateness (70s) the window is gone, and records for it are late.
    w.process(&batch(&[(75_000, "a", 1.0)])).unwrap();
    let (out, rejected) = w.process(&batch(&[(59_000, "a", 5.0)])).unwrap();
    assert!(out.is_none());
    assert!(rejected[0].2, "late");
}

#[test]
fn hopping_windows_count_a_record_in_each_window() {
    let mut w = windows(
        WindowKind::Hopping {
            size: 60_000,
            slide: 30_000,
        },
        0,
        0,
    );
    w.process(&batch(&[(40_000, "a", 1.0)])).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(
        rows(&out),
        [
            (0, 60_000, "a".into(), 1.0, 1),
            (30_000, 90_000, "a".into(), 1.0, 1)
        ]
    );
}

#[test]
fn session_windows_merge_when_a_record_bridges_them() {
    let mut w = windows(WindowKind::Session { gap: 10_000 }, 0, 0);
    // Two sessions of key a, 15s apart, plus b; max_delay 0 would close the first, so use one batch
    // whose records arrive in an order that keeps both open until the bridge arrives.
    let mut w2 = windows(WindowKind::Session { gap: 10_000 }, 30_000, 0);
    let (out, _) = w2
        .process(&batch(&[
            (0, "a", 1.0),
            (15_000, "a", 2.0),
            (1_000, "b", 5.0),
        ]))
        .unwrap();
    assert!(out.is_none());
    let (out, _) = w2.process(&batch(&[(8_000, "a", 4.0)])).unwrap();
    assert!(out.is_none());
    assert_eq!(
        w2.acc.merges, 1,
        "the record at 8s bridges [0,10s) and [15s,25s)"
    );
    let out = w2.finish().unwrap();
    assert_eq!(
        rows(&out),
        [
            (1_000, 11_000, "b".into(), 5.0, 1),
            (0, 25_000, "a".into(), 7.0, 3)
        ]
    );

    // With no delay, a gap longer than `gap` closes the session as soon as the watermark passes it.
    let (out, _) = w
        .process(&batch(&[
            (0, "a", 1.0),
            (5_000, "a", 1.0),
            (20_000, "a", 1.0),
        ]))
        .unwrap();
    assert_eq!(rows(&out), [(0, 15_000, "a".into(), 2.0, 2)]);
}

#[test]
fn global_window_emits_only_at_end_of_input() {
    let mut w = windows(WindowKind::Global, 0, 0);
    let (out, _) = w
        .process(&batch(&[
            (0, "a", 1.0),
            (i64::MAX / 2, "a", 2.0),
            (5, "b", 3.0),
        ]))
        .unwrap();
    assert!(out.is_none());
    let out = w.finish().unwrap();
    let b = out.as_ref().unwrap();
    assert_eq!(b.value("window_start", 0), Value::Null);
    assert_eq!(
        rows(&out),
        [
            (i64::MIN, i64::MAX, "a".into(), 3.0, 2),
            (i64::MIN, i64::MAX, "b".into(), 3.0, 1)
        ]
    );
}

#[test]
fn end_of_input_flushes_every_open_window_in_order() {
    let mut w = windows(WindowKind::Tumbling { size: 10 }, 1_000, 0);
    w.process(&batch(&[
        (25, "b", 1.0),
        (5, "a", 1.0),
        (15, "a", 1.0),
        (5, "c", 1.0),
    ]))
    .unwrap();
    let out = w.finish().unwrap();
    let r: Vec<(i64, String)> = rows(&out).into_iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(
        r,
        [
            (0, "a".into()),
            (0, "c".into()),
            (10, "a".into()),
            (20, "b".into())
        ]
    );
    assert!(w.finish().unwrap().is_none(), "a window is emitted once");
}

#[test]
fn bad_rows_are_set_aside_and_the_rest_aggregate() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let mut b = BatchBuilder::default();
    b.push(
        1,
        Origin::default(),
        [
            ("k".into(), Value::Str("a".into())),
            ("v".into(), Value::Float(1.0)),
        ],
    );
    b.push(
        2,
        Origin::default(),
        [
            ("k".into(), Value::Str("a".into())),
            ("v".into(), Value::Str("x".into())),
        ],
    );
    b.push(3, Origin::default(), [("v".into(), Value::Float(1.0))]);
    b.push(
        4,
        Origin::default(),
        [
            ("k".into(), Value::Str("a".into())),
            ("v".into(), Value::Float(f64::NAN)),
        ],
    );
    let (_, rejected) = w.process(&b.take()).unwrap();
    let reasons: Vec<(usize, &str)> = rejected.iter().map(|(r, m, _)| (*r, m.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (2, "missing key field `k`"),
            (1, "field `v` must be a number, found a string"),
            (3, "field `v` is NaN, not a finite number")
        ]
    );
    assert_eq!(
        rows(&w.finish().unwrap()),
        [(0, 60_000, "a".into(), 1.0, 1)]
    );
}

#[test]
fn results_hold_the_acks_of_the_records_they_contain() {
    let mut w = windows(WindowKind::Tumbling { size: 10 }, 0, 0);
    let token = Ack::new(());
    let mut b = batch(&[(1, "a", 1.0)]);
    b.acks = vec![token.clone()];
    w.process(&b).unwrap();
    let out = w.finish().unwrap().unwrap();
    assert_eq!(out.acks.len(), 1);
    assert!(out.acks[0].same(&token));
}

#[test]
fn a_swap_hands_the_open_panes_and_their_acks_to_the_new_plugin() {
    let token = Ack::new(());
    let mut old = windows(WindowKind::Tumbling { size: 10 }, 0, 0);
    let mut b = batch(&[(1, "a", 1.0), (2, "b", 2.0)]);
    b.acks = vec![token.clone()];
    old.process(&b).unwrap();
    let state = old.save().unwrap();
    let held = old.take_held();
    drop(old);

    let mut new = windows(WindowKind::Tumbling { size: 10 }, 0, 0);
    new.load(&state).unwrap();
    new.give_held(held, true);
    new.process(&batch(&[(3, "a", 4.0)])).unwrap();
    let out = new.finish().unwrap();
    assert_eq!(
        rows(&out),
        [(0, 10, "a".into(), 5.0, 2), (0, 10, "b".into(), 2.0, 1)]
    );
    let out = out.unwrap();
    assert!(
        out.acks.iter().any(|a| a.same(&token)),
        "the records stay uncommitted"
    );
}

#[test]
fn window_table_checks_its_fields() {
    let t = |kind: &str, size: Option<i64>, slide: Option<i64>, gap: Option<i64>| WindowTable {
        kind: Spanned::new(0..1, kind.to_string()),
        size: size.map(Duration),
        slide: slide.map(Duration),
        gap: gap.map(Duration),
    };
    assert_eq!(
        t("tumbling", Some(60_000), None, None).kind(0..1).unwrap(),
        WindowKind::Tumbling { size: 60_000 }
    );
    assert!(t("tumbling", None, None, None)
        .kind(0..1)
        .unwrap_err()
        .message
        .contains("needs `size`"));
    assert!(t("hopping", Some(10), Some(20), None)
        .kind(0..1)
        .unwrap_err()
        .message
        .contains("must not exceed"));
    assert!(t("session", None, None, None)
        .kind(0..1)
        .unwrap_err()
        .message
        .contains("`gap`"));
    assert!(t("global", Some(1), None, None)
        .kind(0..1)
        .unwrap_err()
        .message
        .contains("takes no `size`"));
    assert!(t("sliding", None, None, None)
        .kind(0..1)
        .unwrap_err()
        .message
        .contains("unknown window kind `sliding`"));
}

#[test]
fn a_restored_watermark_skips_records_of_emitted_windows_and_keeps_open_ones() {
    // Before the stop, [0, 60s) was emitted at watermark 95s (the 100s record, max delay 5s); [60s,
    // 120s) was still open. The restart reads a batch again that straddles them.
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 5_000, 0);
    w.resume(95_000);
    assert_eq!(w.resume_point(), Some(95_000), "before any record");
    let (out, rejected) = w
        .process(&batch(&[
            (50_000, "a", 1.0),
            (59_999, "b", 2.0),
            (70_000, "a", 3.0),
            (90_000, "a", 4.0),
        ]))
        .unwrap();
    assert!(out.is_none(), "no partial [0, 60s) again");
    assert!(
        rejected.is_empty(),
        "records of emitted windows are not dead-lettered"
    );
    assert_eq!(w.take_replayed(), 2);
    assert_eq!(w.take_replayed(), 0, "taken");
    // 70s and 90s are behind the restored watermark but their window was open: they still count, and
    // the live watermark (85s) did not jump to 95s, so 87s is not late either.
    assert_eq!(w.watermark(), 85_000);
    assert_eq!(
        w.resume_point(),
        Some(95_000),
        "never below the restored one"
    );
    let (out, rejected) = w
        .process(&batch(&[(87_000, "a", 1.0), (125_000, "a", 5.0)]))
        .unwrap();
    assert!(rejected.is_empty());
    assert_eq!(rows(&out), [(60_000, 120_000, "a".into(), 8.0, 3)]);
    assert_eq!(w.resume_point(), Some(120_000));
    // A record for an emitted window that is also late for the live watermark counts as a replay.
    let (out, rejected) = w.process(&batch(&[(10_000, "a", 1.0)])).unwrap();
    assert!(out.is_none() && rejected.is_empty());
    assert_eq!(w.take_replayed(), 1);
}

#[test]
fn a_restored_watermark_skips_only_the_emitted_windows_of_a_hopping_record() {
    let mut w = windows(
        WindowKind::Hopping {
            size: 60_000,
            slide: 30_000,
        },
        0,
        0,
    );
    w.resume(60_000);
    // 45s is in [0, 60s) (emitted) and [30s, 90s) (open): it counts in the open one only.
    let (_, rejected) = w.process(&batch(&[(45_000, "a", 1.0)])).unwrap();
    assert!(rejected.is_empty());
    assert_eq!(w.take_replayed(), 0);
    let out = w.finish().unwrap();
    assert_eq!(rows(&out), [(30_000, 90_000, "a".into(), 1.0, 1)]);
}

#[test]
fn a_rebuilt_session_that_ended_before_the_restored_watermark_is_not_emitted_again() {
    let mut w = windows(WindowKind::Session { gap: 10_000 }, 0, 0);
    w.resume(30_000);
    // The session [1s, 15s) ended before 30s: emitted before the restart. [25s, 45s) was still open.
    let (out, _) = w
        .process(&batch(&[
            (1_000, "a", 1.0),
            (5_000, "a", 1.0),
            (25_000, "a", 2.0),
            (35_000, "a", 2.0),
        ]))
        .unwrap();
    assert!(out.is_none(), "the old session is skipped, not emitted");
    assert_eq!(w.take_replayed(), 2);
    let out = w.finish().unwrap();
    assert_eq!(rows(&out), [(25_000, 45_000, "a".into(), 4.0, 2)]);
}

#[test]
fn the_global_window_ignores_a_restored_watermark() {
    let mut w = windows(WindowKind::Global, 0, 0);
    w.resume(60_000);
    assert_eq!(w.resume_point(), None);
    w.process(&batch(&[(1_000, "a", 1.0)])).unwrap();
    assert_eq!(w.take_replayed(), 0);
    assert_eq!(rows(&w.finish().unwrap()).len(), 1);
}

#[test]
fn event_times_too_far_ahead_or_out_of_range_are_rejected_not_fatal() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ten_years = 10 * 365 * 86_400_000;
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let (_, rejected) = w
        .process(&batch(&[
            (1_000, "a", 1.0),
            (now + ten_years, "a", 1.0),
            (i64::MAX, "a", 1.0),
            (i64::MIN + 1, "a", 1.0),
            (2_000, "a", 1.0),
        ]))
        .unwrap();
    let reasons: Vec<(usize, &str)> = rejected.iter().map(|(r, m, _)| (*r, m.as_str())).collect();
    assert_eq!(
        reasons.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        [1, 2, 3],
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|(_, m)| m.starts_with("time out of range")),
        "{reasons:?}"
    );
    // The far-future record did not move the watermark: the later records are on time.
    assert_eq!(w.watermark(), 2_000);
    assert_eq!(
        rows(&w.finish().unwrap()),
        [(0, 60_000, "a".into(), 2.0, 2)]
    );
}

#[test]
fn a_key_that_is_an_array_or_object_is_rejected() {
    let mut w = windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let mut b = BatchBuilder::default();
    b.push(
        1,
        Origin::default(),
        [
            ("k".into(), Value::Json("[1,2]".into())),
            ("v".into(), Value::Float(1.0)),
        ],
    );
    let (_, rejected) = w.process(&b.take()).unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0]
        .1
        .starts_with("key field `k` is a JSON array or object"));
}

#[test]
fn keys_are_forgotten_once_their_panes_close() {
    // Many keys, sessions that merge, one record per key and minute: the key table holds only keys
    // with an open pane, and results name their keys right after ids are reused.
    for kind in [
        WindowKind::Tumbling { size: 60_000 },
        WindowKind::Session { gap: 10_000 },
    ] {
        let mut w = windows(kind, 10_000, 0);
        let mut seen = 0;
        for minute in 0..20_i64 {
            let keys: Vec<String> = (0..50)
                .map(|k| format!("k{}", (minute * 7 + k) % 90))
                .collect();
            let records: Vec<(i64, &str, f64)> = keys
                .iter()
                .enumerate()
                .flat_map(|(i, k)| {
                    let t = minute * 60_000 + i as i64;
                    [(t, k.as_str(), 1.0), (t + 5_000, k.as_str(), 2.0)]
                })
                .collect();
            let (out, rejected) = w.process(&batch(&records)).unwrap();
            assert!(rejected.is_empty());
            for (_, _, key, sum, count) in rows(&out) {
                assert!(key.starts_with('k'), "{key}");
                assert_eq!((sum, count), (3.0, 2), "{kind:?} {key}");
                seen += 1;
            }
            assert!(w.keys.len() <= 100, "{kind:?}: {} keys", w.keys.len());
        }
        seen += rows(&w.finish().unwrap()).len();
        assert_eq!(seen, 20 * 50, "{kind:?}");
        assert_eq!(w.keys.len(), 0, "{kind:?}");
    }
}

/// A pseudo-random stream with out-of-order and late records, and keys that come and go.
fn shuffled_records(n: usize) -> Vec<(i64, String, f64)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let jitter = (next() % 40_000) as i64 - 30_000;
            let t = (i as i64) * 1_500 + jitter;
            let key = ["a", "b", "c", "d"][(next() % 4) as usize].to_string();
            (t.max(0), key, (next() % 100) as f64)
        })
        .collect()
}

#[test]
fn saved_state_loaded_into_a_fresh_stage_gives_the_results_of_an_uninterrupted_run() {
    let kinds = [
        (WindowKind::Tumbling { size: 60_000 }, 5_000, 20_000),
        (
            WindowKind::Hopping {
                size: 60_000,
                slide: 20_000,
            },
            5_000,
            0,
        ),
        (WindowKind::Session { gap: 4_000 }, 2_000, 10_000),
        (WindowKind::Global, 0, 0),
    ];
    let records = shuffled_records(400);
    let batches: Vec<Batch> = records
        .chunks(17)
        .map(|c| {
            let c: Vec<(i64, &str, f64)> = c.iter().map(|(t, k, v)| (*t, k.as_str(), *v)).collect();
            batch(&c)
        })
        .collect();
    for (kind, delay, lateness) in kinds {
        let run = |cut: Option<usize>| {
            let mut w = windows(kind, delay, lateness);
            let mut out = Vec::new();
            let mut rejected = 0;
            for (i, b) in batches.iter().enumerate() {
                if cut == Some(i) {
                    // A checkpoint here, then a crash: a fresh stage loads the state.
                    let state = w.save().unwrap();
                    let text = serde_json::to_string(&state).unwrap();
                    w = windows(kind, delay, lateness);
                    w.load(&serde_json::from_str(&text).unwrap()).unwrap();
                }
                let (o, r) = w.process(b).unwrap();
                out.extend(rows(&o));
                rejected += r.len();
            }
            out.extend(rows(&w.finish().unwrap()));
            (out, rejected)
        };
        let whole = run(None);
        assert!(!whole.0.is_empty());
        for cut in [1, 5, 11, batches.len() - 1] {
            assert_eq!(
                run(Some(cut)),
                whole,
                "{kind:?}, restored before batch {cut}"
            );
        }
    }
}

/// A window stage running the bundled `top_k` plugin (ABI 0.2, several rows per window) on records
/// with a key `k`, an artist `a` and a value `v`.
fn top_k_windows(kind: WindowKind, max_delay: i64, lateness: i64) -> Windows<AggregateInstance> {
    let host = crate::plugin::PluginHost::new().unwrap();
    let plugin = host.load("top_k", std::path::Path::new("/")).unwrap();
    let config = [
        ("field".to_string(), wit::ConfigValue::Text("v".into())),
        ("by".to_string(), wit::ConfigValue::Text("a".into())),
        ("k".to_string(), wit::ConfigValue::Integer(2)),
    ];
    let instance = host.aggregate(&plugin, &config, Limits::default()).unwrap();
    let settings = Settings {
        kind,
        key: Some("k".into()),
        event_time: None,
        max_delay,
        allowed_lateness: lateness,
        max_future: 3_600_000,
    };
    Windows::new(settings, instance)
}

/// Records (time, key, artist, value).
fn artist_batch(records: &[(i64, &str, &str, f64)]) -> Batch {
    let mut b = BatchBuilder::default();
    for (i, (t, k, a, v)) in records.iter().enumerate() {
        b.push(
            *t,
            Origin {
                partition: 0,
                offset: i as i64,
            },
            [
                ("k".into(), Value::Str((*k).into())),
                ("a".into(), Value::Str((*a).into())),
                ("v".into(), Value::Float(*v)),
            ],
        );
    }
    b.take()
}

/// `top_k` result rows as (start, end, key, rank, artist, total).
type TopRow = (i64, i64, String, i64, String, f64);

fn top_rows(b: &Option<Batch>) -> Vec<TopRow> {
    let Some(b) = b else { return Vec::new() };
    (0..b.len)
        .map(|r| {
            let t = |name: &str, default: i64| match b.value(name, r) {
                Value::Time(t) => t,
                _ => default,
            };
            let (Value::Str(k), Value::Int(rank), Value::Str(a), Value::Float(total)) = (
                b.value("k", r),
                b.value("rank", r),
                b.value("a", r),
                b.value("total", r),
            ) else {
                panic!("row {r} of {b:?}")
            };
            (
                t("window_start", i64::MIN),
                t("window_end", i64::MAX),
                k.to_string(),
                rank,
                a.to_string(),
                total,
            )
        })
        .collect()
}

#[test]
fn several_rows_per_tumbling_window_carry_their_window_and_key() {
    let mut w = top_k_windows(WindowKind::Tumbling { size: 60_000 }, 0, 0);
    let (out, _) = w
        .process(&artist_batch(&[
            (1_000, "rock", "x", 1.0),
            (2_000, "rock", "y", 5.0),
            (3_000, "rock", "z", 2.0),
            (4_000, "rock", "x", 3.0),
            (5_000, "jazz", "q", 7.0),
            (61_000, "rock", "y", 1.0),
        ]))
        .unwrap();
    let r = |s: i64, k: &str, rank: i64, a: &str, total: f64| {
        (s, s + 60_000, k.to_string(), rank, a.to_string(), total)
    };
    assert_eq!(
        top_rows(&out),
        [
            r(0, "jazz", 1, "q", 7.0),
            r(0, "rock", 1, "y", 5.0),
            r(0, "rock", 2, "x", 4.0),
        ],
        "two rows for rock (k = 2 of 3 artists), one for jazz (its only artist)"
    );
    let out = out.unwrap();
    // Each row's event time is its window's last instant.
    assert_eq!(out.time, [59_999; 3]);
    assert_eq!(
        top_rows(&w.finish().unwrap()),
        [r(60_000, "rock", 1, "y", 1.0)]
    );
}

#[test]
fn merged_sessions_rank_over_both_halves() {
    let mut w = top_k_windows(WindowKind::Session { gap: 10_000 }, 20_000, 0);
    w.process(&artist_batch(&[
        (0, "rock", "x", 5.0),
        (1_000, "rock", "y", 4.0),
        (15_000, "rock", "z", 4.0),
        (16_000, "rock", "y", 1.0),
    ]))
    .unwrap();
    // Bridges the sessions [0, 11s) and [15s, 26s): z (4 + 3 = 7) overtakes x (5), though each half
    // had it second or alone; y (4 + 1 = 5) ties with x and goes after it.
    let (out, _) = w
        .process(&artist_batch(&[(10_000, "rock", "z", 3.0)]))
        .unwrap();
    assert!(out.is_none());
    assert_eq!(
        top_rows(&w.finish().unwrap()),
        [
            (0, 26_000, "rock".into(), 1, "z".into(), 7.0),
            (0, 26_000, "rock".into(), 2, "x".into(), 5.0),
        ]
    );
}

#[test]
fn top_k_state_saved_and_loaded_gives_the_results_of_an_uninterrupted_run() {
    let records = shuffled_records(300);
    let batches: Vec<Batch> = records
        .chunks(13)
        .map(|c| {
            let c: Vec<(i64, &str, &str, f64)> = c
                .iter()
                .enumerate()
                .map(|(i, (t, k, v))| (*t, k.as_str(), ["p", "q", "r", "s", "t"][i % 5], *v))
                .collect();
            artist_batch(&c)
        })
        .collect();
    for (kind, delay, lateness) in [
        (WindowKind::Tumbling { size: 60_000 }, 5_000, 20_000),
        (WindowKind::Session { gap: 4_000 }, 2_000, 10_000),
        (WindowKind::Global, 0, 0),
    ] {
        let run = |cut: Option<usize>| {
            let mut w = top_k_windows(kind, delay, lateness);
            let mut out = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                if cut == Some(i) {
                    let text = serde_json::to_string(&w.save().unwrap()).unwrap();
                    w = top_k_windows(kind, delay, lateness);
                    w.load(&serde_json::from_str(&text).unwrap()).unwrap();
                }
                out.extend(top_rows(&w.process(b).unwrap().0));
            }
            out.extend(top_rows(&w.finish().unwrap()));
            out
        };
        let whole = run(None);
        assert!(
            whole.iter().any(|r| r.3 == 2),
            "{kind:?}: several rows per window"
        );
        for cut in [1, 7, batches.len() - 1] {
            assert_eq!(run(Some(cut)), whole, "{kind:?}, cut at batch {cut}");
        }
    }
}

/// `SumCount` whose `finish` results are changed by `tamper`, and which fails as a trapping plugin
/// does: in `add` on a value of -1, in `finish` for a pane keyed `"bad"`. Like a real instance after a
/// trap, it is unusable until restarted.
struct Tampered {
    inner: SumCount,
    tamper: fn(&mut Finished, &PluginPanes),
    broken: bool,
    restarts: usize,
}

impl Tampered {
    fn new(tamper: fn(&mut Finished, &PluginPanes)) -> Self {
        Tampered {
            inner: SumCount::new(),
            tamper,
            broken: false,
            restarts: 0,
        }
    }

    fn trap(&mut self, call: &str) -> Result<(), PluginError> {
        self.broken = true;
        Err(PluginError::Trap {
            what: "tampered".into(),
            message: format!("in `{call}`: it panicked"),
        })
    }

    fn usable(&self) -> Result<(), PluginError> {
        match self.broken {
            true => Err(PluginError::Trap {
                what: "tampered".into(),
                message: "called after a trap".into(),
            }),
            false => Ok(()),
        }
    }
}

impl Accumulators for Tampered {
    fn inputs(&self) -> &[FieldSpec] {
        self.inner.inputs()
    }
    fn outputs(&self) -> &[FieldSpec] {
        self.inner.outputs()
    }
    fn add(
        &mut self,
        slots: &[u32],
        input: &wit::Batch,
    ) -> Result<Vec<wit::RowError>, PluginError> {
        self.usable()?;
        if matches!(&input.columns[0], wit::Column::Float(v) if v.contains(&-1.0)) {
            // Half the batch folded in before the trap: the rebuild must undo it.
            self.inner.add(
                &slots[..slots.len() / 2],
                &gather(input, &(0..slots.len() as u32 / 2).collect::<Vec<_>>()),
            )?;
            self.trap("add")?;
        }
        self.inner.add(slots, input)
    }
    fn merge(&mut self, dst: u32, src: u32) -> Result<(), PluginError> {
        self.usable()?;
        self.inner.merge(dst, src)
    }
    fn finish(&mut self, panes: &PluginPanes) -> Result<Finished, PluginError> {
        self.usable()?;
        if (0..panes.len()).any(|i| matches!(&panes.key(i), Some(wit::Value::Str(k)) if k == "bad"))
        {
            self.trap("finish")?;
        }
        let mut f = self.inner.finish(panes)?;
        (self.tamper)(&mut f, panes);
        Ok(f)
    }
    fn free(&mut self, slots: &[u32]) -> Result<(), PluginError> {
        self.usable()?;
        self.inner.free(slots)
    }
    fn save(&mut self, slot: u32) -> Result<Vec<u8>, PluginError> {
        self.usable()?;
        self.inner.save(slot)
    }
    fn load(&mut self, slot: u32, state: &[u8]) -> Result<(), PluginError> {
        self.usable()?;
        self.inner.load(slot, state)
    }
    fn restart(&mut self) -> Result<(), PluginError> {
        self.broken = false;
        self.restarts += 1;
        self.inner.restart()
    }
}

/// One row per pane whose `sum` is null when the pane's sum is 0, and a second row for pane 0 only:
/// what a 0.2 plugin using nulls and several rows returns.
fn nulls_and_extra_rows(f: &mut Finished, _: &PluginPanes) {
    let wit::Column::Float(sums) = &f.columns[0].values else {
        panic!()
    };
    f.columns[0].valid = Some(sums.iter().map(|s| *s != 0.0).collect());
    // A row for pane 0 again, at the end: rows need not be grouped.
    f.rows.push(0);
    for c in &mut f.columns {
        match &mut c.values {
            wit::Column::Float(v) => v.push(v[0]),
            wit::Column::Int(v) => v.push(v[0]),
            _ => unreachable!(),
        }
        if let Some(valid) = &mut c.valid {
            valid.push(valid[0]);
        }
    }
}

#[test]
fn null_results_reach_the_sinks_as_null() {
    let settings = Settings {
        kind: WindowKind::Tumbling { size: 60_000 },
        key: Some("k".into()),
        event_time: None,
        max_delay: 0,
        allowed_lateness: 0,
        max_future: 3_600_000,
    };
    let mut w = Windows::new(settings, Tampered::new(nulls_and_extra_rows));
    w.process(&batch(&[(1_000, "a", 0.0), (2_000, "b", 2.0)]))
        .unwrap();
    let out = w.finish().unwrap().unwrap();
    assert_eq!(out.len, 3);
    let sums: Vec<Value> = (0..3).map(|r| out.value("sum", r)).collect();
    assert_eq!(sums, [Value::Null, Value::Float(2.0), Value::Null]);
    let keys: Vec<Value> = (0..3).map(|r| out.value("k", r)).collect();
    assert_eq!(
        keys,
        [
            Value::Str("a".into()),
            Value::Str("b".into()),
            Value::Str("a".into())
        ],
        "the extra row carries pane 0's key"
    );
    let mut jsonl = Vec::new();
    crate::sinks::file::write_jsonl(&out, &mut jsonl);
    let first = String::from_utf8(jsonl).unwrap();
    let first = first.lines().next().unwrap();
    assert!(first.contains(r#""sum":null"#), "{first}");
    assert!(first.contains(r#""count":1"#), "{first}");
}

#[test]
fn a_row_for_a_pane_not_given_is_a_plugin_error() {
    let settings = Settings {
        kind: WindowKind::Global,
        key: None,
        event_time: None,
        max_delay: 0,
        allowed_lateness: 0,
        max_future: 3_600_000,
    };
    // A row for a pane it was not given.
    let mut w = Windows::new(
        settings,
        Tampered::new(|f, panes| f.rows[0] = panes.len() as u32),
    );
    w.process(&batch(&[(1_000, "a", 1.0)])).unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("a row for pane 1, but was given 1 panes"), "{e}");
}

/// `on_error = "dead-letter"`: a batch the plugin fails on is left out and every other record counts
/// once, whatever the failure left behind, across snapshots, fired windows and the end of input.
#[test]
fn after_a_failure_the_open_windows_are_rebuilt_without_the_failed_batch() {
    let settings = |kind| Settings {
        kind,
        key: Some("k".into()),
        event_time: None,
        max_delay: 0,
        allowed_lateness: 0,
        max_future: 3_600_000,
    };
    // 40 batches of 2,000 records over 4 keys and 1-minute windows; batches 7 and 33 hold a -1.
    let batches: Vec<Arc<Batch>> = (0..40)
        .map(|b| {
            let records: Vec<(i64, String, f64)> = (0..2000)
                .map(|i| {
                    let n = b * 2000 + i;
                    let v = if (b == 7 || b == 33) && i == 1500 {
                        -1.0
                    } else {
                        (n % 7) as f64
                    };
                    (n * 20, format!("k{}", n % 4), v)
                })
                .collect();
            let refs: Vec<(i64, &str, f64)> = records
                .iter()
                .map(|(t, k, v)| (*t, k.as_str(), *v))
                .collect();
            Arc::new(batch(&refs))
        })
        .collect();
    for kind in [
        WindowKind::Tumbling { size: 60_000 },
        WindowKind::Session { gap: 10 },
        WindowKind::Global,
    ] {
        // The expected results: the same run without the two failing batches.
        let mut plain = Windows::new(settings(kind), Tampered::new(|_, _| {}));
        let mut expected = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            if i != 7 && i != 33 {
                expected.extend(rows(&plain.process(b).unwrap().0));
            }
        }
        expected.extend(rows(&plain.finish().unwrap()));

        let mut w = Windows::new(settings(kind), Tampered::new(|_, _| {}));
        let mut recovery = Recovery::default();
        let mut got = Vec::new();
        let mut failed = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            recovery.before(&mut w).unwrap();
            match w.process(b) {
                Ok((emitted, _)) => {
                    got.extend(rows(&emitted));
                    recovery.after(b.clone());
                }
                Err(_) => {
                    recovery.rebuild(&mut w).unwrap();
                    failed.push(i);
                }
            }
        }
        got.extend(rows(&w.finish().unwrap()));
        assert_eq!(failed, [7, 33], "{kind:?}");
        assert_eq!(w.acc.restarts, 2, "{kind:?}");
        assert_eq!(got, expected, "{kind:?}");
    }
}

#[test]
fn at_the_end_a_window_whose_result_fails_is_named_and_the_others_come_out() {
    let settings = Settings {
        kind: WindowKind::Global,
        key: Some("k".into()),
        event_time: None,
        max_delay: 0,
        allowed_lateness: 0,
        max_future: 3_600_000,
    };
    let mut w = Windows::new(settings, Tampered::new(|_, _| {}));
    let mut recovery = Recovery::default();
    recovery.before(&mut w).unwrap();
    let b = Arc::new(batch(&[(1, "a", 1.0), (2, "bad", 2.0), (3, "c", 3.0)]));
    w.process(&b).unwrap();
    recovery.after(b);
    assert!(w.finish().is_err());
    // One by one, as the operator does: rebuild, skip what was handled, go on.
    let mut handled = 0;
    let mut results = Vec::new();
    let mut lost = Vec::new();
    'rebuild: loop {
        recovery.rebuild(&mut w).unwrap();
        for _ in 0..handled {
            let due = w.next_due_at_end().unwrap();
            w.skip_pane(due);
        }
        while let Some(due) = w.next_due_at_end() {
            handled += 1;
            match w.finish_pane(due) {
                Ok(b) => results.extend(rows(&Some(b))),
                Err(_) => {
                    lost.push(w.describe(due));
                    continue 'rebuild;
                }
            }
        }
        break;
    }
    assert_eq!(lost, [serde_json::json!({ "window": null, "key": "bad" })]);
    let keys: Vec<String> = results.iter().map(|r| r.2.clone()).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"a".to_string()) && keys.contains(&"c".to_string()));
}

#[test]
fn a_fire_emits_by_window_then_key_value_and_a_refired_pane_once() {
    // Keys first seen in reverse order (ids for c, b, a ascend), windows out of order within max_delay.
    let mut w = windows(WindowKind::Tumbling { size: 10_000 }, 30_000, 20_000);
    let (out, _) = w
        .process(&batch(&[
            (25_000, "c", 1.0),
            (5_000, "b", 1.0),
            (15_000, "a", 1.0),
            (5_000, "c", 2.0),
            (15_000, "b", 1.0),
            (5_000, "a", 4.0),
        ]))
        .unwrap();
    assert!(out.is_none());
    let (out, _) = w.process(&batch(&[(50_000, "z", 0.0)])).unwrap();
    assert_eq!(
        rows(&out),
        [
            (0, 10_000, "a".into(), 4.0, 1),
            (0, 10_000, "b".into(), 1.0, 1),
            (0, 10_000, "c".into(), 2.0, 1),
            (10_000, 20_000, "a".into(), 1.0, 1),
            (10_000, 20_000, "b".into(), 1.0, 1),
        ]
    );
    // Due: the two panes not fired; expiry: all seven, none past 20s + 20s yet.
    assert_eq!((w.due.len(), w.expiry.len()), (2, 7));
    // Late but allowed: both fired panes are due again and emitted again, each once.
    let (out, rejected) = w
        .process(&batch(&[
            (12_000, "a", 1.0),
            (7_000, "b", 3.0),
            (8_000, "b", 1.0),
        ]))
        .unwrap();
    assert!(rejected.is_empty());
    assert_eq!(
        rows(&out),
        [
            (0, 10_000, "b".into(), 5.0, 3),
            (10_000, 20_000, "a".into(), 2.0, 2),
        ]
    );
    assert_eq!((w.due.len(), w.expiry.len()), (2, 7));
    // At the end only the panes never emitted come out; nothing stays scheduled.
    let out = w.finish().unwrap();
    assert_eq!(
        rows(&out),
        [
            (20_000, 30_000, "c".into(), 1.0, 1),
            (50_000, 60_000, "z".into(), 0.0, 1),
        ]
    );
    assert_eq!((w.due.len(), w.expiry.len(), w.panes.len()), (0, 0, 0));
}

/// Entries (end, start, key) from a small generator, unique, in a scrambled order.
fn scrambled_entries(keys: &[KeyId], n: usize) -> Vec<schedule::Entry> {
    let mut x: u64 = 12345;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut set = std::collections::BTreeSet::new();
    while set.len() < n {
        let end = 1_000 * (next(5) as i64 + 1);
        let key = keys[next(keys.len() as u64) as usize];
        set.insert((end, end - 1_000, key));
    }
    let mut v: Vec<_> = set.into_iter().collect();
    for i in (1..v.len()).rev() {
        v.swap(i, next(i as u64 + 1) as usize);
    }
    v
}

#[test]
fn order_sorts_by_window_then_key_value_as_a_sort_by_value_did() {
    let mut keys = KeyTable::default();
    let ids: Vec<KeyId> = [
        Value::Str("c".into()),
        Value::Str("b".into()),
        Value::Int(7),
        Value::Str("a".into()),
        Value::Str("bb".into()),
        Value::Bool(false),
        Value::Float(-0.5),
    ]
    .into_iter()
    .map(|v| keys.id(Key(v)))
    .collect();
    let entries = scrambled_entries(&ids, 25);
    // What `fire` did before: from (end, start, id) order, a stable sort by (end, start, key value).
    let mut want = entries.clone();
    want.sort();
    want.sort_by(|a, b| (a.0, a.1, keys.key(a.2)).cmp(&(b.0, b.1, keys.key(b.2))));
    let mut rank = Vec::new();
    let mut scrambled = entries.clone();
    order(&keys, &mut rank, &mut scrambled);
    assert_eq!(scrambled, want);
    // As buckets give them: by window, keys in any order.
    let mut by_window = entries;
    by_window.sort_by_key(|e| (e.0, e.1));
    order(&keys, &mut rank, &mut by_window);
    assert_eq!(by_window, want);
    assert_ne!(
        want.iter().map(|e| e.2).collect::<Vec<_>>(),
        {
            let mut by_id = want.clone();
            by_id.sort();
            by_id.iter().map(|e| e.2).collect::<Vec<_>>()
        },
        "the test needs key ids out of value order"
    );
}

#[test]
fn key_codes_follow_first_use_for_dense_and_sparse_ids() {
    for ids in [
        vec![3, 1, 3, 0, 1],
        vec![5, 3_000_000, 5, 70_000, 3_000_000],
    ] {
        let mut first = FirstUse::new(ids.iter().copied());
        assert_eq!(first.dense.is_empty(), ids.contains(&3_000_000), "{ids:?}");
        let codes: Vec<(u32, bool)> = ids.iter().map(|&id| first.code(id)).collect();
        assert_eq!(
            codes,
            [(0, true), (1, true), (0, false), (2, true), (1, false)],
            "{ids:?}"
        );
    }
}

#[test]
fn string_keys_make_the_column_from_values_makes() {
    let mut keys = KeyTable::default();
    let [c, a, b] = ["c", "a", "b"].map(|s| keys.id(Key(Value::Str(s.into()))));
    let rows = [a, c, a, b, b, c, a];
    let values: Vec<Value> = rows.iter().map(|k| keys.key(*k).0.clone()).collect();
    let fast = string_keys(&keys, rows.iter().copied()).expect("string keys");
    assert_eq!(fast.data_type(), column::from_values(&values).data_type());
    assert_eq!(&*fast, &*column::from_values(&values));
    for (r, v) in values.iter().enumerate() {
        assert_eq!(&column::value(&*fast, r), v);
    }
    // Another type, or no row: `from_values` decides.
    let i = keys.id(Key(Value::Int(1)));
    assert!(string_keys(&keys, [a, i].into_iter()).is_none());
    assert!(string_keys(&keys, std::iter::empty()).is_none());
}
