//! `on_error`: what a plugin stage does when its plugin fails.

use serde::Deserialize;

/// What a plugin stage does when its plugin fails on a batch (traps, panics, passes its `timeout` or
/// `memory_limit`, or breaks the contract).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The batch's records go to the dead-letter output with the cause, a fresh instance of the plugin
    /// takes over (a window stage's with its open windows rebuilt), and the run goes on.
    #[default]
    DeadLetter,
    /// The run stops with the error.
    Fail,
}
