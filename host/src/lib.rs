//! Tributary: a streaming analytics runtime whose stages are WebAssembly plugins.
//!
//! The modules follow the data: `config` (pipeline.toml → checked stages), `topology` (the DAG and its
//! threads), `sources`, `operators`, `sinks`; `plugin` hosts the WebAssembly components.

pub mod authoring;
pub mod checkpoint;
pub mod config;
pub mod deadletter;
pub mod exchange;
pub mod kafka;
pub mod observe;
pub mod operators;
pub mod outfile;
pub mod plugin;
pub mod record;
pub mod sinks;
pub mod sources;
pub mod topology;
