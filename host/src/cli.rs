//! Command-line interface.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tributary::config::Pipeline;
use tributary::deadletter::DeadLetters;
use tributary::kafka;
use tributary::observe::http::Server;
use tributary::observe::metrics::RunMetrics;
use tributary::observe::status::{Display, Status};
use tributary::outfile::OutputMode;
use tributary::plugin::PluginHost;
use tributary::topology;

/// Exit code for an invalid pipeline file, so scripts can tell it from a failed run.
const INVALID_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "Streaming analytics pipelines with WebAssembly stages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline to the end of its input (or until Ctrl-C / SIGTERM).
    Run {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        file: PathBuf,
        /// Exit with status 1 when a stage set aside every record it received (dead-lettered or
        /// late), as a wrong field name or a plugin that fails on everything does.
        #[arg(long)]
        strict: bool,
        /// Serve Prometheus metrics over HTTP at `http://ADDR/metrics` while the run goes on, like
        /// `127.0.0.1:9898` (port 0 picks a free port; the address is printed on stderr). See the
        /// README for the metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// With `--metrics-addr`: keep serving the final metrics this long after the run ends, like
        /// `30s`, so a scraper gets the last counts (Ctrl-C or SIGTERM exits sooner).
        #[arg(long, value_name = "DURATION", requires = "metrics_addr")]
        metrics_linger: Option<String>,
        /// Show no progress line and no stats line (the summary at the end is still printed).
        #[arg(long, short)]
        quiet: bool,
        /// When stderr is not a terminal: how often to print the stats line, like `10s` (the default).
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        stats_interval: String,
        /// Watch the pipeline file and the plugin files it names while the run goes on: a changed
        /// plugin stage (its `plugin`, `config`, `timeout`, `memory_limit`, `on_error` or
        /// `max_rows_per_record`, or a new `.wasm` file) is checked and swapped in between two batches,
        /// without restarting the sources or losing a record; a window keeps its open windows when the
        /// new plugin loads their saved state. An invalid change, or one that needs a restart, is
        /// reported and the run goes on unchanged. Meant for live Kafka sources and paced replays: a
        /// run still ends at the end of its input.
        #[arg(long)]
        watch: bool,
    },
    /// Check a pipeline file (stage types, inputs, cycles, fields, plugins) and report every problem.
    Validate {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        file: PathBuf,
        /// Also print the DAG on stdout: each stage with its type, plugin, inputs and outputs, and
        /// the fields it reads and writes (a plugin's, as its `init` declared them).
        #[arg(long)]
        explain: bool,
    },
    /// Load a capture (JSON Lines, as `replay` reads) into a Kafka topic, keeping keys and timestamps.
    Produce {
        /// Bootstrap brokers, `host:port`, comma-separated.
        #[arg(long)]
        brokers: String,
        /// The topic to write to.
        #[arg(long)]
        topic: String,
        /// The capture file.
        file: PathBuf,
        /// Pace by record timestamps: 0 as fast as possible, 1 in real time, 10 ten times faster.
        #[arg(long, default_value_t = 0.0)]
        speed: f64,
        /// Create the topic with this many partitions (and unlimited retention, since captures carry old
        /// timestamps) if it does not exist. Records keep their captured partition when the topic has
        /// it; the others are placed by key hash.
        #[arg(long)]
        partitions: Option<i32>,
        /// A librdkafka client property, `KEY=VALUE` (repeatable), e.g. `security.protocol=SASL_SSL`.
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Write a Kafka topic to a capture file (from the beginning, then live), in timestamp order.
    Record {
        /// Bootstrap brokers, `host:port`, comma-separated.
        #[arg(long)]
        brokers: String,
        /// The topic to read.
        #[arg(long)]
        topic: String,
        /// The capture file to write (truncated).
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many records.
        #[arg(long)]
        max_records: Option<u64>,
        /// Stop after this long, like `30s` or `5m`. Without a limit, record until Ctrl-C.
        #[arg(long)]
        duration: Option<String>,
        /// How long a partition read to its end holds back the others' newer records, in case older
        /// ones are produced to it (the `kafka` source's `idle_partition`).
        #[arg(long, default_value = "5s")]
        idle_partition: String,
        /// A librdkafka client property, `KEY=VALUE` (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Work with plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the plugins bundled in this binary.
    List,
    /// Create the crate of a new plugin: an example plugin of the kind asked for, its unit test, a
    /// README, and this tributary's SDK; `cargo build --release` in it makes the `.wasm`.
    New {
        /// The crate's name, like `my_average`; also its directory.
        name: String,
        /// What the plugin does: `transform` (map, filter, flat-map) or `aggregate` (a window's
        /// aggregation).
        #[arg(long, value_enum)]
        kind: Kind,
        /// Where to create the crate's directory (outside the tributary repository is best).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print what a plugin declares, given its config: kind, ABI, the fields it reads and writes.
    Describe {
        /// A `.wasm` file, or the name of a bundled plugin.
        plugin: String,
        /// An entry of the plugin's config table, `KEY=VALUE` (repeatable); VALUE is read as TOML
        /// (a number, `true`) or else as text.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Run a plugin on sample records (a capture file) and print the results as a table.
    Test {
        /// A `.wasm` file, or the name of a bundled plugin.
        plugin: String,
        /// An entry of the plugin's config table, `KEY=VALUE` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// The records: a capture file (JSON lines, as `record` writes and `replay` reads).
        #[arg(long)]
        input: PathBuf,
        /// For an aggregate: tumbling windows of this size, like `1m`. Default: one window over all
        /// records.
        #[arg(long)]
        window: Option<String>,
        /// For an aggregate: the field to group by. Default: all records together.
        #[arg(long)]
        key: Option<String>,
        /// Print at most this many result rows.
        #[arg(long, default_value_t = 20)]
        rows: usize,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    Transform,
    Aggregate,
}

pub fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run {
            file,
            strict,
            metrics_addr,
            metrics_linger,
            quiet,
            stats_interval,
            watch: hot_swap,
        } => {
            let duration = |flag: &str, d: &str| {
                tributary::config::Duration::parse(d)
                    .map(|d| std::time::Duration::from_millis(d.millis().max(0) as u64))
                    .map_err(|e| anyhow::anyhow!("`{flag}`: {e}"))
            };
            let stats_interval = duration("--stats-interval", &stats_interval)?;
            if stats_interval.is_zero() {
                anyhow::bail!("`--stats-interval` must be longer than 0, like `10s`; use `--quiet` for no stats line");
            }
            let watch = Watch {
                metrics_addr,
                metrics_linger: metrics_linger
                    .map(|d| duration("--metrics-linger", &d))
                    .transpose()?
                    .unwrap_or_default(),
                display: if quiet {
                    Display::Quiet
                } else if std::io::stderr().is_terminal() {
                    Display::Bars
                } else {
                    Display::Lines(stats_interval)
                },
            };
            run(&file, strict, watch, hot_swap)
        }
        Command::Validate { file, explain } => validate(&file, explain),
        Command::Produce {
            brokers,
            topic,
            file,
            speed,
            partitions,
            properties,
        } => {
            if !(speed.is_finite() && speed >= 0.0) {
                anyhow::bail!("`--speed` must be 0 (as fast as possible) or a positive number");
            }
            let properties = kafka::parse_properties(&properties)?;
            let opts = kafka::produce::ProduceOptions {
                brokers: &brokers,
                topic: &topic,
                file: &file,
                speed,
                partitions,
                properties: &properties,
            };
            let stop = topology::StopFlag::default();
            on_signal_stop(&stop);
            let started = Instant::now();
            let r = kafka::produce::produce(&opts, &stop).with_context(|| {
                format!("cannot produce `{}` to topic `{topic}`", file.display())
            })?;
            let created = if r.created { ", created" } else { "" };
            let by_key = if r.by_key > 0 {
                format!("; {} placed by key hash", r.by_key)
            } else {
                String::new()
            };
            eprintln!(
                "tributary: produced {} records to topic `{topic}` ({} partitions{created}{by_key}) in {:.2?}",
                r.records,
                r.partitions,
                started.elapsed()
            );
            if r.skipped > 0 {
                eprintln!("tributary: {} unreadable line(s) skipped", r.skipped);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Record {
            brokers,
            topic,
            out,
            max_records,
            duration,
            idle_partition,
            properties,
        } => {
            let parse = |flag: &str, d: &str| {
                tributary::config::Duration::parse(d)
                    .map(|d| std::time::Duration::from_millis(d.millis().max(0) as u64))
                    .map_err(|e| anyhow::anyhow!("`{flag}`: {e}"))
            };
            let duration = duration.map(|d| parse("--duration", &d)).transpose()?;
            let idle_partition = parse("--idle-partition", &idle_partition)?;
            let properties = kafka::parse_properties(&properties)?;
            let opts = kafka::record::RecordOptions {
                brokers: &brokers,
                topic: &topic,
                out: &out,
                max_records,
                duration,
                idle_partition,
                properties: &properties,
            };
            let stop = topology::StopFlag::default();
            on_signal_stop(&stop);
            let started = Instant::now();
            let r = kafka::record::record(&opts, &stop)
                .with_context(|| format!("cannot record topic `{topic}`"))?;
            eprintln!(
                "tributary: recorded {} records from topic `{topic}` ({} partitions) to {} in {:.2?}",
                r.records,
                r.partitions,
                out.display(),
                started.elapsed()
            );
            if r.skipped > 0 {
                eprintln!(
                    "tributary: {} record(s) without a value or timestamp skipped",
                    r.skipped
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command } => plugin_command(command),
    }
}

fn plugin_command(command: PluginCommand) -> anyhow::Result<ExitCode> {
    use tributary::authoring;
    use tributary::plugin::PluginKind;
    match command {
        PluginCommand::List => {
            let host = PluginHost::new()?;
            for name in tributary::plugin::bundled_names() {
                let plugin = host.load(name, Path::new("."))?;
                println!("{name:<10} {}", plugin.kind.as_str());
            }
        }
        PluginCommand::New { name, kind, dir } => {
            let kind = match kind {
                Kind::Transform => PluginKind::Transform,
                Kind::Aggregate => PluginKind::Aggregate,
            };
            let made = authoring::new_plugin(&name, kind, &dir)?;
            eprintln!(
                "created the {} plugin `{name}` in {}\n  cd {} && cargo build --release\n  -> {}",
                kind.as_str(),
                made.dir.display(),
                made.dir.display(),
                made.wasm.display()
            );
            if !wasm_target_installed() {
                eprintln!("the build needs the wasm target once: rustup target add wasm32-unknown-unknown");
            }
        }
        PluginCommand::Describe { plugin, config } => {
            let host = PluginHost::new()?;
            let loaded = host.load(&plugin, Path::new("."))?;
            let table = authoring::config_table(&config)?;
            let text = authoring::describe(&host, &loaded, &table)
                .with_context(|| format!("plugin `{plugin}` refused its config"))?;
            print!("{text}");
        }
        PluginCommand::Test {
            plugin,
            config,
            input,
            window,
            key,
            rows,
        } => {
            let host = PluginHost::new()?;
            let loaded = host.load(&plugin, Path::new("."))?;
            let table = authoring::config_table(&config)?;
            if loaded.kind == PluginKind::Transform && (window.is_some() || key.is_some()) {
                anyhow::bail!(
                    "`--window` and `--key` are for aggregates; `{plugin}` is a transform"
                );
            }
            let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            // A bundled plugin goes by name; a file by its absolute path, as the pipeline lives elsewhere.
            let plugin_path = if Path::new(&plugin).exists() {
                absolute(Path::new(&plugin))
            } else {
                PathBuf::from(&plugin)
            };
            let work =
                std::env::temp_dir().join(format!("tributary-plugin-test-{}", std::process::id()));
            std::fs::create_dir_all(&work)
                .with_context(|| format!("cannot create {}", work.display()))?;
            let dead_letter = work.join("dead_letter.jsonl");
            let text = authoring::test_pipeline(&authoring::TestRun {
                plugin: &plugin_path,
                kind: loaded.kind,
                config: &table,
                input: &absolute(&input),
                window: window.as_deref(),
                key: key.as_deref(),
                rows,
                dead_letter: &dead_letter,
            });
            let file = work.join("pipeline.toml");
            std::fs::write(&file, text)
                .with_context(|| format!("cannot write {}", file.display()))?;
            let quiet = Watch {
                metrics_addr: None,
                metrics_linger: std::time::Duration::ZERO,
                display: Display::Quiet,
            };
            let code = run(&file, false, quiet, false);
            let dead = std::fs::read_to_string(&dead_letter).unwrap_or_default();
            if !dead.is_empty() {
                let keep = std::env::current_dir()?.join("plugin-test-dead-letters.jsonl");
                std::fs::write(&keep, &dead)
                    .with_context(|| format!("cannot write {}", keep.display()))?;
                eprintln!("dead letters, with their reasons: {}", keep.display());
            }
            let _ = std::fs::remove_dir_all(&work);
            return code;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether rustup has the wasm target (a guess: a toolchain without rustup is not checked).
fn wasm_target_installed() -> bool {
    std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_or(true, |o| {
            String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown")
        })
}

/// Loads and builds a pipeline, printing every problem; `None` if there were any.
fn load(file: &Path, host: &PluginHost) -> Option<(Pipeline, Vec<(usize, topology::Built)>)> {
    let pipeline = match Pipeline::load(file) {
        Ok(p) => p,
        Err(problems) => {
            eprintln!("{problems}");
            return None;
        }
    };
    match topology::build(&pipeline, host) {
        Ok(built) => Some((pipeline, built)),
        Err(problems) => {
            eprintln!("{problems}");
            None
        }
    }
}

fn validate(file: &Path, explain: bool) -> anyhow::Result<ExitCode> {
    let host = PluginHost::new()?;
    let Some((pipeline, built)) = load(file, &host) else {
        return Ok(ExitCode::from(INVALID_CONFIG));
    };
    if explain {
        print!("{}", topology::explain(&pipeline, &built));
    }
    eprintln!("{}: ok ({} stages)", file.display(), pipeline.stages.len());
    Ok(ExitCode::SUCCESS)
}

/// How a run is watched: `--metrics-addr`, `--metrics-linger`, and the progress or stats line.
struct Watch {
    metrics_addr: Option<String>,
    metrics_linger: std::time::Duration,
    display: Display,
}

fn run(file: &Path, strict: bool, watch: Watch, hot_swap: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let host = PluginHost::new()?;
    let Some((pipeline, built)) = load(file, &host) else {
        return Ok(ExitCode::from(INVALID_CONFIG));
    };
    if let Some(s) = pipeline
        .stages
        .iter()
        .find(|s| hot_swap && s.type_name == "exchange")
    {
        eprintln!(
            "error: `--watch` cannot swap the window stages of a consumer group (`{}` gets its records through an exchange, with a plugin instance per exchange partition); run without `--watch`, and restart the members one at a time to change their plugins (the group moves their partitions meanwhile)",
            s.name.trim_end_matches(".exchange")
        );
        return Ok(ExitCode::from(INVALID_CONFIG));
    }
    // Bound before anything is written, so a bad address fails the run before it starts.
    let server = watch
        .metrics_addr
        .as_deref()
        .map(|addr| {
            Server::bind(addr)
                .with_context(|| format!("cannot serve the metrics of `--metrics-addr {addr}`"))
        })
        .transpose()?;
    let dead_path = pipeline.resolve(&pipeline.dead_letter.path);
    let mode = pipeline
        .dead_letter
        .mode
        .unwrap_or(OutputMode::default_for(pipeline.resumes()));
    let (dead, torn) = DeadLetters::create(&dead_path, mode).with_context(|| {
        format!(
            "cannot create the dead-letter file `{}`",
            dead_path.display()
        )
    })?;
    if torn > 0 {
        eprintln!(
            "warning: removed a torn last line ({torn} bytes, left by a crash) from the dead-letter file `{}`",
            dead_path.display()
        );
    }
    eprintln!(
        "tributary: running {} ({} stages)",
        file.display(),
        pipeline.stages.len()
    );
    let checkpoints = std::sync::Arc::new(
        tributary::checkpoint::Coordinator::for_pipeline(&pipeline)
            .context("cannot read the checkpoints")?,
    );
    let stop = topology::StopFlag::default();
    on_signal_stop(&stop);
    exit_if_a_stop_hangs(checkpoints.shutdown_timeout());
    let watched = topology::watch(&pipeline);
    let served = match server {
        Some(server) => {
            let addr = server.addr();
            server
                .serve(RunMetrics::new(watched.clone(), dead.clone()))
                .context("cannot start the thread serving `--metrics-addr`")?;
            eprintln!("tributary: metrics at http://{addr}/metrics");
            Some(addr)
        }
        None => None,
    };
    let status = Status::start(watched.clone(), watch.display);
    let slots = topology::hotswap::slots(&pipeline);
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let watcher = hot_swap.then(|| {
            std::thread::Builder::new()
                .name("hotswap".into())
                .spawn_scoped(scope, || {
                    if let Err(e) = topology::hotswap::watch(&pipeline, &host, &slots, &done) {
                        eprintln!("warning: `--watch` stopped, the run goes on without it: {e}");
                    }
                })
        });
        if let Some(Err(e)) = &watcher {
            eprintln!(
                "warning: `--watch` could not start its thread, the run goes on without it: {e}"
            );
        }
        let result = topology::run(&pipeline, built, dead, stop, checkpoints, &watched, &slots);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    if let Some(status) = status {
        status.finish();
    }
    let code = report(started, strict, result);
    if let Some(addr) = served.filter(|_| !watch.metrics_linger.is_zero()) {
        linger(addr, watch.metrics_linger);
    }
    Ok(code)
}

/// Keeps the process (and so the metrics endpoint) alive for `--metrics-linger`, or until a signal.
fn linger(addr: std::net::SocketAddr, linger: std::time::Duration) {
    eprintln!(
        "tributary: serving the final metrics at http://{addr}/metrics for {linger:?} (Ctrl-C to exit now)"
    );
    let until = Instant::now() + linger;
    while Instant::now() < until && !SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Prints the run summary (or its errors) and tells the exit code.
fn report(
    started: Instant,
    strict: bool,
    result: Result<topology::RunReport, Vec<topology::RunError>>,
) -> ExitCode {
    match result {
        Ok(report) => {
            eprintln!("tributary: finished in {:.2?}", started.elapsed());
            eprintln!("{report}");
            let lost: Vec<_> = report
                .stages
                .iter()
                .filter(|s| s.lost_everything())
                .collect();
            for s in &lost {
                let reasons = s
                    .reasons
                    .iter()
                    .map(|(r, n)| format!("{r} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let late = if s.late > 0 {
                    format!("; {} late", s.late)
                } else {
                    String::new()
                };
                eprintln!(
                    "warning: stage `{}` set aside every record it received ({}): {reasons}{late}; check its fields and plugin (`--strict` makes this an error)",
                    s.name, s.records_in
                );
            }
            if strict && !lost.is_empty() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    eprintln!("  caused by: {cause}");
                    source = cause.source();
                }
            }
            ExitCode::from(1)
        }
    }
}

/// A clean stop has `shutdown_timeout` to write its last checkpoint and commit; a stage stuck past
/// that (a database that does not answer) must not keep the process alive. Nothing is lost by leaving:
/// the last complete checkpoint stands, and a restart reads again what came after it.
fn exit_if_a_stop_hangs(timeout: std::time::Duration) {
    std::thread::spawn(move || {
        while !SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Past the checkpoint's own bound, with a margin for the stages to notice and finish.
        std::thread::sleep(timeout + std::time::Duration::from_secs(2));
        eprintln!(
            "warning: the run did not stop within `shutdown_timeout` ({timeout:?}); exiting now: the last complete checkpoint stands, and a restart reads again what came after it"
        );
        std::process::exit(0);
    });
}

static STOP: std::sync::OnceLock<topology::StopFlag> = std::sync::OnceLock::new();
/// Set by Ctrl-C or SIGTERM (the stop flag is also set by a failing stage).
static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ctrl-C or SIGTERM stops the run cleanly (sinks flush; open windows stay uncommitted); a second one
/// exits at once.
fn on_signal_stop(stop: &topology::StopFlag) {
    extern "C" fn handler(_: libc::c_int) {
        // Plugin calls still running a second after this are interrupted (see `plugin::INTERRUPT`).
        tributary::plugin::INTERRUPT.store(true, std::sync::atomic::Ordering::SeqCst);
        SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(stop) = STOP.get() {
            if stop
                .as_atomic()
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                // SAFETY: `_exit` is async-signal-safe.
                unsafe { libc::_exit(130) };
            }
        }
    }
    if STOP.set(stop.clone()).is_ok() {
        let handler = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only touches an atomic and calls `_exit`, both async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
    }
}
