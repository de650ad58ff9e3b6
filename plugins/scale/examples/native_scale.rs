//! The `scale` logic compiled natively, timed on batches of 1,024 rows as a transform stage sends them.
//! `scripts/bench` runs it beside `host/examples/plugin_bench.rs`, which makes the same calls to the
//! WASM build through the host.
//!
//! `cargo run --release --example native_scale -p scale -- ROWS [logic|exports]` prints nanoseconds
//! per row and a checksum of the results.
//! - `logic` (the default) calls the plugin's `apply` on a borrowed batch, as its unit tests do.
//! - `exports` calls the function the WASM build exports (the SDK's glue), natively, with the batch
//!   taken by value, so each call gets its own copy, as the component model's copy into the sandbox
//!   gives it. The gap left between this and the WASM build is the compiler and the sandbox's call.

use scale::Scale;
use std::cell::RefCell;
use std::time::Instant;
use tributary_sdk::bindings::types as wit;
use tributary_sdk::transform::glue;
use tributary_sdk::{Batch, Column, Config, Transform};

thread_local! {
    static PLUGIN: RefCell<Option<Scale>> = const { RefCell::new(None) };
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mode = args.next().unwrap_or_else(|| "logic".into());
    let values: Vec<f64> = (0..1024).map(|i| (i % 97) as f64 * 0.37).collect();
    let batches = rows / 1024;
    let mut checksum = 0.0;
    let started = Instant::now();
    match mode.as_str() {
        "logic" => {
            let config = Config::from_pairs(&[("field", "streams".into()), ("factor", 1e8.into())]);
            let mut scale = Scale::init(&config).expect("config");
            let input = Batch {
                rows: 1024,
                columns: vec![Column::Float(values)],
            };
            for _ in 0..batches {
                let out = scale.apply(&input);
                if let Column::Float(v) = &out.columns[0] {
                    checksum += v[1023];
                }
            }
        }
        "exports" => {
            let config = vec![
                ("field".into(), wit::ConfigValue::Text("streams".into())),
                ("factor".into(), wit::ConfigValue::Float(1e8)),
            ];
            glue::init::<Scale>(&PLUGIN, config).expect("config");
            let input = wit::Batch {
                rows: 1024,
                columns: vec![wit::Column::Float(values)],
            };
            for _ in 0..batches {
                let out = glue::apply::<Scale>(&PLUGIN, input.clone());
                if let wit::Column::Float(v) = &out.columns[0].values {
                    checksum += v[1023];
                }
            }
        }
        other => panic!("no mode `{other}`: use logic or exports"),
    }
    let ns = started.elapsed().as_nanos() as f64 / (batches * 1024) as f64;
    println!("{ns:.2} {checksum:e}");
}
