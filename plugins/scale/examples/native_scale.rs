//! The `scale` logic compiled natively, timed on batches of 1,024 rows as a transform stage sends them.
//! `scripts/bench` runs it beside `host/examples/plugin_bench.rs`, which makes the same calls to the
//! WASM build through the host.
//!
//! `cargo run --release --example native_scale -p scale -- ROWS` prints nanoseconds per row and a
//! checksum of the results.

use scale::Scale;
use std::time::Instant;
use tributary_sdk::{Batch, Column, Config, Transform};

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let config = Config::from_pairs(&[("field", "streams".into()), ("factor", 1e8.into())]);
    let mut scale = Scale::init(&config).expect("config");
    let input = Batch {
        rows: 1024,
        columns: vec![Column::Float(
            (0..1024).map(|i| (i % 97) as f64 * 0.37).collect(),
        )],
    };
    let mut checksum = 0.0;
    let started = Instant::now();
    for _ in 0..rows / 1024 {
        let out = scale.apply(&input);
        if let Column::Float(v) = &out.columns[0] {
            checksum += v[1023];
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / (rows / 1024 * 1024) as f64;
    println!("{ns:.2} {checksum:e}");
}
