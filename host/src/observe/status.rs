//! What `tributary run` shows while it runs: on a terminal, a live progress line per source
//! (`indicatif`); otherwise (CI, logs) a plain stats line every `--stats-interval`. `--quiet` shows
//! neither; the end-of-run summary is printed either way.

use crate::topology::registry::Role;
use crate::topology::Watched;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a run is shown while it goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Nothing (`--quiet`).
    Quiet,
    /// A live progress line per source, redrawn in place (stderr is a terminal).
    Bars,
    /// A stats line every so often (stderr is not a terminal).
    Lines(Duration),
}

/// The thread that shows the run; [`Status::finish`] ends it before the summary is printed.
pub struct Status {
    done: Sender<()>,
    thread: JoinHandle<()>,
}

impl Status {
    /// Starts showing `stages` as `display` says; `None` for [`Display::Quiet`].
    pub fn start(stages: Vec<Watched>, display: Display) -> Option<Status> {
        let (done, rx) = channel::<()>();
        let thread = match display {
            Display::Quiet => return None,
            Display::Bars => std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || bars(&stages, |d| rx.recv_timeout(d))),
            Display::Lines(every) => std::thread::Builder::new()
                .name("stats".into())
                .spawn(move || lines(&stages, every, |d| rx.recv_timeout(d))),
        };
        // Without its thread the run goes on unshown: showing it is not worth failing for.
        thread.ok().map(|thread| Status { done, thread })
    }

    /// Stops showing (the progress lines are cleared) and waits for the thread.
    pub fn finish(self) {
        let _ = self.done.send(());
        let _ = self.thread.join();
    }
}

/// Waits up to a duration; `Ok` or `Disconnected` means stop.
type Wait<'a> = dyn FnMut(Duration) -> Result<(), RecvTimeoutError> + 'a;

/// One source's numbers at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Reading {
    records: u64,
    bytes: u64,
    total_bytes: u64,
    /// Summed over partitions; `None` if the source knows no lag.
    lag: Option<i64>,
}

fn read(s: &Watched) -> Reading {
    let lags = s.stats.partition_lag();
    Reading {
        records: s.stats.records_in.load(Ordering::Relaxed),
        bytes: s.stats.bytes_read.load(Ordering::Relaxed),
        total_bytes: s.stats.bytes_total.load(Ordering::Relaxed),
        lag: (!lags.is_empty()).then(|| lags.iter().map(|(_, l)| (*l).max(0)).sum()),
    }
}

/// Rates over the last few seconds, so the line follows changes without jumping at every tick.
struct Rate {
    samples: VecDeque<(Instant, Reading)>,
}

impl Rate {
    const SPAN: Duration = Duration::from_secs(3);

    fn new() -> Self {
        Rate {
            samples: VecDeque::new(),
        }
    }

    /// Adds a reading; returns (records per second, bytes per second) over the span.
    fn push(&mut self, now: Instant, r: Reading) -> (f64, f64) {
        self.samples.push_back((now, r));
        while self.samples.len() > 2 && now - self.samples[1].0 >= Self::SPAN {
            self.samples.pop_front();
        }
        let (then, first) = self.samples[0];
        let secs = (now - then).as_secs_f64();
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (
            r.records.saturating_sub(first.records) as f64 / secs,
            r.bytes.saturating_sub(first.bytes) as f64 / secs,
        )
    }
}

/// "12.3k", "4.5M": short numbers for a line read at a glance.
fn short(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// "1h02m", "3m05s", "42s".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A source's rate, share of its file read, ETA and lag, as far as it knows them.
fn details(r: Reading, records_per_sec: f64, bytes_per_sec: f64, share: bool) -> Vec<String> {
    let mut parts = vec![format!("{}/s", short(records_per_sec))];
    if r.total_bytes > 0 {
        if share {
            let pct = (r.bytes as f64 / r.total_bytes as f64 * 100.0).min(100.0);
            parts.push(format!("{pct:.0}%"));
        }
        if bytes_per_sec > 0.0 && r.bytes < r.total_bytes {
            let eta = (r.total_bytes - r.bytes) as f64 / bytes_per_sec;
            parts.push(format!("eta {}", duration(eta)));
        }
    }
    if let Some(lag) = r.lag {
        parts.push(format!("lag {lag}"));
    }
    parts
}

/// A source's part of the stats line: records read, their rate, and what else it knows.
fn describe(name: &str, r: Reading, records_per_sec: f64, bytes_per_sec: f64) -> String {
    let parts = details(r, records_per_sec, bytes_per_sec, true);
    format!("{name} read {} ({})", r.records, parts.join(", "))
}

/// The stats line: each source's progress, each other stage's counts, and what was set aside.
fn stats_line(elapsed: Duration, stages: &[Watched], sources: &[String]) -> String {
    let mut parts: Vec<String> = sources.to_vec();
    let (mut dead, mut late) = (0, 0);
    for s in stages {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        dead += load(&s.stats.dead);
        late += load(&s.stats.late);
        match s.role {
            Role::Source => {}
            Role::Operator => parts.push(format!(
                "{} {} -> {}",
                s.name,
                load(&s.stats.records_in),
                load(&s.stats.records_out)
            )),
            Role::Sink => parts.push(format!("{} {}", s.name, load(&s.stats.records_in))),
        }
    }
    parts.push(format!("dead-lettered {dead}, late {late}"));
    format!(
        "tributary: {}: {}",
        duration(elapsed.as_secs_f64()),
        parts.join(" | ")
    )
}

/// The plain stats line every `every`, on stderr.
fn lines(
    stages: &[Watched],
    every: Duration,
    wait: impl FnMut(Duration) -> Result<(), RecvTimeoutError>,
) {
    let mut wait: Box<Wait<'_>> = Box::new(wait);
    let started = Instant::now();
    let sources: Vec<&Watched> = stages.iter().filter(|s| s.role == Role::Source).collect();
    let mut last: Vec<(Instant, Reading)> = sources.iter().map(|s| (started, read(s))).collect();
    while let Err(RecvTimeoutError::Timeout) = wait(every) {
        let now = Instant::now();
        let parts: Vec<String> = sources
            .iter()
            .zip(&mut last)
            .map(|(s, (then, before))| {
                let r = read(s);
                let secs = (now - *then).as_secs_f64().max(1e-9);
                let rate = r.records.saturating_sub(before.records) as f64 / secs;
                let bytes = r.bytes.saturating_sub(before.bytes) as f64 / secs;
                (*then, *before) = (now, r);
                describe(&s.name, r, rate, bytes)
            })
            .collect();
        eprintln!("{}", stats_line(now - started, stages, &parts));
    }
}

/// A live line per source on the terminal, until told to stop; the lines are cleared at the end.
fn bars(stages: &[Watched], wait: impl FnMut(Duration) -> Result<(), RecvTimeoutError>) {
    let mut wait: Box<Wait<'_>> = Box::new(wait);
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let file_style = ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}%  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let open_style = ProgressStyle::with_template("{prefix} {spinner}  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let width = stages
        .iter()
        .filter(|s| s.role == Role::Source)
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    let mut shown: Vec<(&Watched, ProgressBar, Rate, bool)> = stages
        .iter()
        .filter(|s| s.role == Role::Source)
        .map(|s| {
            let bar = multi.add(ProgressBar::no_length().with_style(open_style.clone()));
            bar.set_prefix(format!("{:<width$}", s.name));
            (s, bar, Rate::new(), false)
        })
        .collect();
    while let Err(RecvTimeoutError::Timeout) = wait(Duration::from_millis(200)) {
        let now = Instant::now();
        for (s, bar, rate, has_length) in &mut shown {
            let r = read(s);
            let (records_per_sec, bytes_per_sec) = rate.push(now, r);
            // The bar shows the share itself.
            let parts = details(r, records_per_sec, bytes_per_sec, false);
            bar.set_message(format!("{} records, {}", r.records, parts.join(", ")));
            // A Kafka source that falls back to a capture learns its size only then.
            if r.total_bytes > 0 && !*has_length {
                *has_length = true;
                bar.set_style(file_style.clone());
                bar.set_length(r.total_bytes);
            }
            if *has_length {
                bar.set_position(r.bytes.min(r.total_bytes));
            } else {
                bar.tick();
            }
        }
    }
    for (_, bar, _, _) in &shown {
        bar.finish_and_clear();
    }
    let _ = multi.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::observe::tests::watched;

    #[test]
    fn a_source_shows_its_rate_share_and_eta() {
        let r = Reading {
            records: 1200,
            bytes: 250,
            total_bytes: 1000,
            lag: None,
        };
        assert_eq!(
            describe("events", r, 12_345.0, 25.0),
            "events read 1200 (12.3k/s, 25%, eta 30s)"
        );
        let kafka = Reading {
            records: 7,
            lag: Some(93),
            ..Reading::default()
        };
        assert_eq!(describe("k", kafka, 3.0, 0.0), "k read 7 (3/s, lag 93)");
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(duration(185.0), "3m05s");
    }

    #[test]
    fn the_stats_line_has_every_stage_and_the_set_aside() {
        let stages = [
            watched("events", Role::Source),
            watched("avg", Role::Operator),
            watched("out", Role::Sink),
        ];
        stages[1].stats.records_in.store(10, Ordering::Relaxed);
        stages[1].stats.records_out.store(2, Ordering::Relaxed);
        stages[1].stats.late.store(1, Ordering::Relaxed);
        stages[2].stats.records_in.store(2, Ordering::Relaxed);
        let line = stats_line(
            Duration::from_secs(10),
            &stages,
            &["events read 11 (1/s)".into()],
        );
        assert_eq!(
            line,
            "tributary: 10s: events read 11 (1/s) | avg 10 -> 2 | out 2 | dead-lettered 0, late 1"
        );
    }

    #[test]
    fn rates_cover_the_last_seconds() {
        let mut rate = Rate::new();
        let t0 = Instant::now();
        let at = |records, bytes| Reading {
            records,
            bytes,
            ..Reading::default()
        };
        assert_eq!(rate.push(t0, at(0, 0)), (0.0, 0.0));
        assert_eq!(
            rate.push(t0 + Duration::from_secs(1), at(100, 10)),
            (100.0, 10.0)
        );
        rate.push(t0 + Duration::from_secs(4), at(400, 40));
        // The first sample fell out of the span: the rate is over the last 3 s.
        assert_eq!(
            rate.push(t0 + Duration::from_secs(5), at(1300, 50)),
            (300.0, 10.0)
        );
    }
}
