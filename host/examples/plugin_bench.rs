//! The bundled `average` or `scale` plugin's WASM build, timed through the host on the same calls as
//! `plugins/average/examples/native_average.rs` and
//! `plugins/scale/examples/native_scale.rs` make to the natively compiled logic. `scripts/bench`
//! runs both side by side: the ratio is what running a stage as WASM costs against native code.
//!
//! `cargo run --release --example plugin_bench -- average|scale ROWS` prints nanoseconds per row and a
//! checksum of the results.

use std::path::Path;
use std::time::Instant;
use tributary::plugin::{
    wit, Bounds, ConfigValue, KeyColumn, KeyDict, KeyValues, Keys, Limits, Panes, PluginHost,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "average".into());
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let host = PluginHost::new().expect("engine");
    let plugin = host.load(&which, Path::new(".")).expect("a bundled plugin");
    let batches = rows / 1024;
    let (ns, checksum) = match which.as_str() {
        "average" => {
            let config = [("field".to_string(), ConfigValue::Text("streams".into()))];
            let mut agg = host
                .aggregate(&plugin, &config, Limits::default())
                .expect("instance");
            let input = wit::Batch {
                rows: 1024,
                columns: vec![wit::Column::Float(
                    (0..1024).map(|i| (i % 97) as f64 * 0.37e8).collect(),
                )],
            };
            let slots: Vec<u32> = (0..1024).map(|i| i % 700).collect();
            let open: Vec<u32> = (0..700).collect();
            // What a keyed window stage passes at `finish` (ABI 0.4): the slots, their windows' bounds
            // and keys in columns, every pane a window of its own key.
            let mut dict = wit::PackedStrings::new();
            for slot in &open {
                dict.push(&format!("genre {slot}"));
            }
            let panes = Panes {
                slots: open.clone(),
                bounds: Some(Bounds {
                    starts: vec![0; open.len()],
                    ends: vec![60_000; open.len()],
                }),
                keys: Keys::Column(KeyColumn {
                    values: KeyValues::Str(KeyDict {
                        dict,
                        codes: open.clone(),
                    }),
                    valid: None,
                }),
            };
            let mut checksum = 0.0;
            let started = Instant::now();
            for _ in 0..batches {
                agg.add(&slots, &input).expect("add");
                let out = agg.finish(&panes).expect("finish");
                if let wit::Column::Float(avg) = &out.columns[0].values {
                    checksum += avg.iter().sum::<f64>();
                }
                agg.free(&open).expect("free");
            }
            (started.elapsed(), checksum)
        }
        "scale" => {
            let config = [
                ("field".to_string(), ConfigValue::Text("streams".into())),
                ("factor".to_string(), ConfigValue::Float(1e8)),
            ];
            let mut scale = host
                .transform(&plugin, &config, Limits::default())
                .expect("instance");
            let input = wit::Batch {
                rows: 1024,
                columns: vec![wit::Column::Float(
                    (0..1024).map(|i| (i % 97) as f64 * 0.37).collect(),
                )],
            };
            let mut checksum = 0.0;
            let started = Instant::now();
            for _ in 0..batches {
                let out = scale.apply(&input).expect("apply");
                if let wit::Column::Float(v) = &out.columns[0].values {
                    checksum += v[1023];
                }
            }
            (started.elapsed(), checksum)
        }
        other => panic!("no benchmark for `{other}`; use average or scale"),
    };
    let ns = ns.as_nanos() as f64 / (batches * 1024) as f64;
    println!("{ns:.2} {checksum:e}");
}
