//! Operators: stages between sources and sinks. One file per `type`; the list is in `topology::registry`.

pub mod transform;
pub mod window;
