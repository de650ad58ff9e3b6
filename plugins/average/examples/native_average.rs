//! The `average` logic compiled natively, timed on the calls a 1-minute window stage makes per batch:
//! `add` 1,024 rows into 700 slots, `finish` and `free` those slots. `scripts/bench` runs it beside
//! `host/examples/plugin_bench.rs`, which makes the same calls to the WASM build through the host.
//!
//! `cargo run --release --example native_average -p average -- ROWS [logic|exports]` prints
//! nanoseconds per row and a checksum of the results (equal on both sides when the logic is).
//! - `logic` (the default) calls the plugin through the SDK's instance, as its unit tests do: the
//!   plugin's own work, with nothing of the boundary.
//! - `exports` calls the functions the WASM build exports (the SDK's glue), natively, with what
//!   `plugin_bench` passes the WASM build: the panes' bounds and string keys, and arguments taken by
//!   value, so each call gets its own copy, as the component model's copy into the sandbox gives it.
//!   The gap left between this and the WASM build is the compiler and the sandbox's call itself.

use average::Average;
use std::cell::RefCell;
use std::time::Instant;
use tributary_sdk::aggregate::{glue, Instance};
use tributary_sdk::bindings::{iface, types as wit};
use tributary_sdk::{Aggregate, Batch, Column, Config};

thread_local! {
    static PLUGIN: RefCell<Option<Instance<Average>>> = const { RefCell::new(None) };
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mode = args.next().unwrap_or_else(|| "logic".into());
    let values: Vec<f64> = (0..1024).map(|i| (i % 97) as f64 * 0.37e8).collect();
    let slots: Vec<u32> = (0..1024).map(|i| i % 700).collect();
    let open: Vec<u32> = (0..700).collect();
    let batches = rows / 1024;
    let mut checksum = 0.0;
    let started = Instant::now();
    match mode.as_str() {
        "logic" => {
            let config = Config::from_pairs(&[("field", "streams".into())]);
            let mut agg = Instance::new(Average::init(&config).expect("config"));
            let input = Batch {
                rows: 1024,
                columns: vec![Column::Float(values)],
            };
            for _ in 0..batches {
                agg.add(&slots, &input);
                let out = agg.finish(&open);
                if let Column::Float(avg) = &out.columns[0] {
                    checksum += avg.iter().sum::<f64>();
                }
                agg.free(&open);
            }
        }
        "exports" => {
            let config = vec![("field".into(), wit::ConfigValue::Text("streams".into()))];
            glue::init::<Average>(&PLUGIN, config).expect("config");
            let input = wit::Batch {
                rows: 1024,
                columns: vec![wit::Column::Float(values)],
            };
            // As `plugin_bench` builds them: every pane a window of its own string key.
            let (mut text, mut offsets) = (String::new(), vec![0]);
            for slot in &open {
                text.push_str(&format!("genre {slot}"));
                offsets.push(text.len() as u32);
            }
            let panes = iface::Panes {
                slots: open.clone(),
                bounds: Some(iface::Bounds {
                    starts: vec![0; open.len()],
                    ends: vec![60_000; open.len()],
                }),
                keys: iface::Keys::Column(iface::KeyColumn {
                    values: iface::KeyValues::Str(iface::KeyDict {
                        dict: wit::PackedStrings { text, offsets },
                        codes: open.clone(),
                    }),
                    valid: None,
                }),
            };
            for _ in 0..batches {
                glue::add::<Average>(&PLUGIN, slots.clone(), input.clone());
                let out = glue::finish::<Average>(&PLUGIN, panes.clone());
                if let wit::Column::Float(avg) = &out.columns[0].values {
                    checksum += avg.iter().sum::<f64>();
                }
                glue::free::<Average>(&PLUGIN, open.clone());
            }
        }
        other => panic!("no mode `{other}`: use logic or exports"),
    }
    let ns = started.elapsed().as_nanos() as f64 / (batches * 1024) as f64;
    println!("{ns:.2} {checksum:e}");
}
