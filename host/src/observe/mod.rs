//! Watching a run while it goes on: the Prometheus endpoint (`--metrics-addr`) and the progress or
//! stats line. Both read the stages' own counters ([`crate::topology::StageStats`]), the ones the run
//! summary prints, so what they show cannot disagree with it.

pub mod http;
pub mod metrics;
pub mod status;
