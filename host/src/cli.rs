//! Command-line interface.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tributary::config::Pipeline;
use tributary::deadletter::DeadLetters;
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
    /// Run a pipeline to the end of its input.
    Run {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        file: PathBuf,
    },
    /// Check a pipeline file (stage types, inputs, cycles, fields, plugins) and report every problem.
    Validate {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        file: PathBuf,
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
}

pub fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run { file } => run(&file),
        Command::Validate { file } => validate(&file),
        Command::Plugin {
            command: PluginCommand::List,
        } => {
            let host = PluginHost::new()?;
            for name in tributary::plugin::bundled_names() {
                let plugin = host.load(name, Path::new("."))?;
                println!("{name:<10} {}", plugin.kind.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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

fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let host = PluginHost::new()?;
    let Some((pipeline, _)) = load(file, &host) else {
        return Ok(ExitCode::from(INVALID_CONFIG));
    };
    eprintln!("{}: ok ({} stages)", file.display(), pipeline.stages.len());
    Ok(ExitCode::SUCCESS)
}

fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let host = PluginHost::new()?;
    let Some((pipeline, built)) = load(file, &host) else {
        return Ok(ExitCode::from(INVALID_CONFIG));
    };
    let dead_path = pipeline.resolve(&pipeline.dead_letter.path);
    let dead = DeadLetters::create(&dead_path).with_context(|| {
        format!(
            "cannot create the dead-letter file `{}`",
            dead_path.display()
        )
    })?;
    eprintln!(
        "tributary: running {} ({} stages)",
        file.display(),
        pipeline.stages.len()
    );
    let stop = topology::StopFlag::default();
    on_signal_stop(&stop);
    match topology::run(&pipeline, built, dead, stop) {
        Ok(report) => {
            eprintln!("tributary: finished in {:.2?}", started.elapsed());
            eprintln!("{report}");
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::from(1))
        }
    }
}

static STOP: std::sync::OnceLock<topology::StopFlag> = std::sync::OnceLock::new();

/// Ctrl-C or SIGTERM stops the run cleanly (sinks flush; open windows stay uncommitted); a second one
/// exits at once.
fn on_signal_stop(stop: &topology::StopFlag) {
    extern "C" fn handler(_: libc::c_int) {
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
