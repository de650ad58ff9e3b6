//! The run's Prometheus metrics, encoded at each scrape from the stages' counters (a collector, not
//! metrics of their own: the hot path adds to one set of atomics, once per batch).
//!
//! Exported, all prefixed `tributary_`:
//! - `records_in_total{stage}`, `records_out_total{stage}`: as in the run summary (a source's `in` is
//!   the lines or messages it read, bad ones included).
//! - `dead_letter_total{stage,reason}`: records written to the dead-letter file, by kind of reason
//!   (the reason's text up to its first `:`); late records count here too, as `reason="late"`, so
//!   the sum is the summary's "N record(s) dead-lettered".
//! - `late_total{stage}`: records a window set aside as late.
//! - `replayed_total{stage}`: records a window skipped after a restart (already emitted).
//! - `window_watermark_seconds{stage}` and `window_watermark_lag_seconds{stage}`: a window's
//!   watermark (Unix time) and how far it trails the wall clock.
//! - `source_read_bytes_total{stage}`, `source_size_bytes{stage}`: a replay's progress through its file.
//! - `kafka_consumer_lag{stage,topic,partition}`: records the broker has that the source has not read,
//!   as of the latest fetch (no extra request).
//! - `mongodb_spool_documents{stage}`: documents waiting in a mongodb sink's spool.
//! - `plugin_batch_seconds{stage}`: a histogram of the time a transform or window stage spent on one
//!   batch, its plugin calls included.

use crate::deadletter::DeadLetters;
use crate::topology::Watched;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A run's metrics: its stages' counters and its dead letters, read at each scrape.
#[derive(Clone)]
pub struct RunMetrics {
    registry: Arc<Registry>,
}

impl RunMetrics {
    pub fn new(stages: Vec<Watched>, dead: DeadLetters) -> Self {
        let mut registry = Registry::with_prefix("tributary");
        registry.register_collector(Box::new(RunCollector { stages, dead }));
        RunMetrics {
            registry: Arc::new(registry),
        }
    }

    /// The metrics now, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and every value encodes.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// The `Content-Type` of [`RunMetrics::encode`]'s text.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}

struct RunCollector {
    stages: Vec<Watched>,
    dead: DeadLetters,
}

impl fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunCollector")
            .field("stages", &self.stages.len())
            .finish()
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One metric family: its description, then a sample per label set.
fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'a str, String)>, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn stage(s: &Watched) -> Vec<(&'static str, String)> {
    vec![("stage", s.name.clone())]
}

impl Collector for RunCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let stages = &self.stages;
        let counter =
            |f: fn(&Watched) -> u64| move |s: &Watched| (stage(s), ConstCounter::new(f(s)));
        family(
            &mut enc,
            "records_in",
            "Records a stage received (a source: lines or messages read, bad ones included).",
            MetricType::Counter,
            stages.iter().map(counter(|s| load(&s.stats.records_in))),
        )?;
        family(
            &mut enc,
            "records_out",
            "Records a stage handed on downstream.",
            MetricType::Counter,
            stages.iter().map(counter(|s| load(&s.stats.records_out))),
        )?;
        family(
            &mut enc,
            "dead_letter",
            "Records written to the dead-letter file, by stage and kind of reason (late ones as `late`).",
            MetricType::Counter,
            self.dead.counts().into_iter().map(|(stage, reason, n)| {
                (
                    vec![("stage", stage), ("reason", reason)],
                    ConstCounter::new(n),
                )
            }),
        )?;
        family(
            &mut enc,
            "late",
            "Records a window stage set aside as late for their windows.",
            MetricType::Counter,
            stages.iter().map(counter(|s| load(&s.stats.late))),
        )?;
        family(
            &mut enc,
            "replayed",
            "Records a window stage skipped after a restart because their windows were emitted before it.",
            MetricType::Counter,
            stages.iter().map(counter(|s| load(&s.stats.replayed))),
        )?;

        let watermarks: Vec<_> = stages
            .iter()
            .filter_map(|s| Some((s, s.stats.watermark()?)))
            .collect();
        family(
            &mut enc,
            "window_watermark_seconds",
            "A window stage's watermark, as a Unix time.",
            MetricType::Gauge,
            watermarks
                .iter()
                .map(|(s, wm)| (stage(s), ConstGauge::new(*wm as f64 / 1000.0))),
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        family(
            &mut enc,
            "window_watermark_lag_seconds",
            "How far a window stage's watermark trails the wall clock (a replay of old records trails by their age).",
            MetricType::Gauge,
            watermarks
                .iter()
                .map(|(s, wm)| (stage(s), ConstGauge::new(now - *wm as f64 / 1000.0))),
        )?;

        let files: Vec<_> = stages
            .iter()
            .filter(|s| load(&s.stats.bytes_total) > 0)
            .collect();
        family(
            &mut enc,
            "source_read_bytes",
            "Bytes a source has read of its capture file.",
            MetricType::Counter,
            files
                .iter()
                .map(|s| (stage(s), ConstCounter::new(load(&s.stats.bytes_read)))),
        )?;
        family(
            &mut enc,
            "source_size_bytes",
            "The size of the capture file a source reads.",
            MetricType::Gauge,
            files
                .iter()
                .map(|s| (stage(s), ConstGauge::new(load(&s.stats.bytes_total) as i64))),
        )?;
        family(
            &mut enc,
            "kafka_consumer_lag",
            "Records a Kafka partition holds that the source has not read yet, as of the latest fetch.",
            MetricType::Gauge,
            stages.iter().flat_map(|s| {
                s.stats
                    .partition_lag()
                    .into_iter()
                    .map(|((topic, partition), lag)| {
                        (
                            vec![
                                ("stage", s.name.clone()),
                                ("topic", topic),
                                ("partition", partition.to_string()),
                            ],
                            ConstGauge::new(lag),
                        )
                    })
            }),
        )?;
        family(
            &mut enc,
            "mongodb_spool_documents",
            "Documents waiting in a mongodb sink's spool file to be written to the server.",
            MetricType::Gauge,
            stages.iter().filter_map(|s| {
                let n = s.stats.spooled.load(Ordering::Relaxed);
                (n >= 0).then(|| (stage(s), ConstGauge::new(n)))
            }),
        )?;
        let mut m = enc.encode_descriptor(
            "plugin_batch_seconds",
            "Time a transform or window stage spent on one batch, its plugin calls included.",
            None,
            MetricType::Histogram,
        )?;
        for s in stages
            .iter()
            .filter(|s| s.role == crate::topology::registry::Role::Operator)
        {
            let labels = stage(s);
            s.stats.batch_seconds.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outfile::OutputMode;
    use crate::topology::registry::Role;

    use crate::observe::tests::watched;

    #[test]
    fn scrapes_read_the_stage_counters() {
        let dir = std::env::temp_dir().join(format!("tributary-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (dead, _) = DeadLetters::create(&dir.join("d.jsonl"), OutputMode::Truncate).unwrap();
        let source = watched("events", Role::Source);
        let window = watched("avg", Role::Operator);
        let sink = watched("db", Role::Sink);
        let metrics = RunMetrics::new(
            vec![source.clone(), window.clone(), sink.clone()],
            dead.clone(),
        );

        source.stats.records_in.fetch_add(10, Ordering::Relaxed);
        source.stats.records_out.fetch_add(9, Ordering::Relaxed);
        source.stats.bytes_total.store(1000, Ordering::Relaxed);
        source.stats.bytes_read.store(250, Ordering::Relaxed);
        source.stats.set_partition_lag("t", 2, 42);
        dead.line(
            "events",
            "invalid capture line: oops",
            "x",
            serde_json::Value::Null,
        );
        window.stats.late.fetch_add(1, Ordering::Relaxed);
        window
            .stats
            .watermark
            .store(1_717_243_200_000, Ordering::Relaxed);
        window.stats.batch_seconds.observe(0.001);
        sink.stats.spooled.store(3, Ordering::Relaxed);

        let text = metrics.encode();
        for line in [
            "# TYPE tributary_records_in_total counter",
            "tributary_records_in_total{stage=\"events\"} 10",
            "tributary_records_out_total{stage=\"events\"} 9",
            "tributary_records_in_total{stage=\"db\"} 0",
            "tributary_dead_letter_total{stage=\"events\",reason=\"invalid capture line\"} 1",
            "tributary_late_total{stage=\"avg\"} 1",
            "tributary_window_watermark_seconds{stage=\"avg\"} 1717243200.0",
            "tributary_source_read_bytes_total{stage=\"events\"} 250",
            "tributary_source_size_bytes{stage=\"events\"} 1000",
            "tributary_kafka_consumer_lag{stage=\"events\",topic=\"t\",partition=\"2\"} 42",
            "tributary_mongodb_spool_documents{stage=\"db\"} 3",
            "tributary_plugin_batch_seconds_count{stage=\"avg\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // Only what a stage has: no watermark for the source, no spool for the window.
        assert!(!text.contains("tributary_window_watermark_seconds{stage=\"events\"}"));
        assert!(!text.contains("tributary_mongodb_spool_documents{stage=\"avg\"}"));
        assert!(!text.contains("tributary_plugin_batch_seconds_count{stage=\"db\"}"));
        // A later scrape sees later counts.
        source.stats.records_in.fetch_add(5, Ordering::Relaxed);
        assert!(metrics
            .encode()
            .contains("tributary_records_in_total{stage=\"events\"} 15"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
