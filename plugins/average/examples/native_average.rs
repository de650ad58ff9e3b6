//! The `average` logic compiled natively, timed on the calls a 1-minute window stage makes per batch:
//! `add` 1,024 rows into 700 slots, `finish` and `free` those slots. `scripts/bench` runs it beside
//! `host/examples/plugin_bench.rs`, which makes the same calls to the WASM build through the host.
//!
//! `cargo run --release --example native_average -p average -- ROWS` prints nanoseconds per row and a
//! checksum of the results (equal on both sides when the logic is).

use average::Average;
use std::time::Instant;
use tributary_sdk::aggregate::Instance;
use tributary_sdk::{Aggregate, Batch, Column, Config};

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let config = Config::from_pairs(&[("field", "streams".into())]);
    let mut agg = Instance::new(Average::init(&config).expect("config"));
    let input = Batch {
        rows: 1024,
        columns: vec![Column::Float(
            (0..1024).map(|i| (i % 97) as f64 * 0.37e8).collect(),
        )],
    };
    let slots: Vec<u32> = (0..1024).map(|i| i % 700).collect();
    let open: Vec<u32> = (0..700).collect();
    let mut checksum = 0.0;
    let started = Instant::now();
    for _ in 0..rows / 1024 {
        agg.add(&slots, &input);
        let out = agg.finish(&open);
        if let Column::Float(avg) = &out.columns[0] {
            checksum += avg.iter().sum::<f64>();
        }
        agg.free(&open);
    }
    let ns = started.elapsed().as_nanos() as f64 / (rows / 1024 * 1024) as f64;
    println!("{ns:.2} {checksum:e}");
}
