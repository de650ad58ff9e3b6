//! Watching a run while it goes on: the Prometheus endpoint (`--metrics-addr`) and the progress or
//! stats line. Both read the stages' own counters ([`crate::topology::StageStats`]), the ones the run
//! summary prints, so what they show cannot disagree with it.

pub mod http;
pub mod metrics;
pub mod status;

#[cfg(test)]
pub(crate) mod tests {
    use crate::topology::registry::Role;
    use crate::topology::{StageStats, Watched};
    use std::sync::Arc;

    /// A stage to watch in unit tests, with zeroed counters.
    pub(crate) fn watched(name: &str, role: Role) -> Watched {
        Watched {
            name: name.into(),
            type_name: "t".into(),
            role,
            stats: Arc::new(StageStats::default()),
        }
    }
}
