//! Sources: where records enter a pipeline. One file per `type`; the list is in `topology::registry`.

pub mod capture;
pub mod kafka;
pub mod lines;
pub mod pool;
pub mod replay;
