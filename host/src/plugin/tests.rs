//! The sandbox against a real misbehaving plugin (`plugins/hostile`, built for the tests only).

use super::*;
use std::time::{Duration, Instant};

fn host() -> PluginHost {
    PluginHost::new().unwrap()
}

fn hostile(
    host: &PluginHost,
    behave: &str,
    limits: Limits,
) -> Result<TransformInstance, PluginError> {
    let plugin = host
        .load(env!("TRIBUTARY_TEST_PLUGIN_HOSTILE"), Path::new("/"))
        .unwrap();
    let config = [("behave".to_string(), ConfigValue::Text(behave.into()))];
    host.transform(&plugin, &config, limits)
}

fn batch() -> wit::Batch {
    wit::Batch {
        rows: 3,
        columns: vec![wit::Column::Float(vec![1.0, 2.0, 3.0])],
    }
}

fn short(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        ..Limits::default()
    }
}

#[test]
fn a_well_behaved_call_passes_under_the_limits() {
    let host = host();
    let mut ok = hostile(&host, "ok", short(1000)).unwrap();
    for _ in 0..3 {
        assert_eq!(ok.apply(&batch()).unwrap().columns.len(), 1);
    }
}

#[test]
fn a_plugin_that_loops_is_stopped_at_its_deadline() {
    let host = host();
    let started = Instant::now();
    let e = hostile(&host, "loop-init", short(200)).err().unwrap();
    assert!(matches!(e, PluginError::Timeout { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("did not return from `init` within 200ms"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut looping = hostile(&host, "loop", short(200)).unwrap();
    let e = looping.apply(&batch()).err().unwrap();
    assert!(
        e.to_string().contains("`apply`") && e.to_string().contains("`timeout`"),
        "{e}"
    );
}

#[test]
fn a_plugin_that_grows_without_end_hits_its_memory_limit() {
    let host = host();
    let limits = Limits {
        memory: 32 << 20,
        ..Limits::default()
    };
    let mut grow = hostile(&host, "grow", limits).unwrap();
    let e = grow.apply(&batch()).err().unwrap();
    assert!(matches!(e, PluginError::Memory { .. }), "{e}");
    assert!(
        e.to_string().contains("memory limit of 32 MiB in `apply`"),
        "{e}"
    );
}

#[test]
fn a_panic_is_one_line_naming_the_call() {
    let host = host();
    let mut panics = hostile(&host, "panic", short(1000)).unwrap();
    let e = panics.apply(&batch()).err().unwrap().to_string();
    // The SDK's panic hook tells the host the message and place before the plugin aborts.
    assert!(
        e.contains("in `apply`: it panicked: hostile plugin panicked on purpose (at "),
        "{e}"
    );
    assert!(e.contains("src/lib.rs:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // A restarted instance reports its own panic the same way.
    panics.restart().unwrap();
    assert!(panics
        .apply(&batch())
        .err()
        .unwrap()
        .to_string()
        .contains("on purpose"));
}

#[test]
fn malformed_files_are_errors_never_panics() {
    let dir = std::env::temp_dir().join(format!("tributary-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::fs::read(env!("TRIBUTARY_TEST_PLUGIN_HOSTILE")).unwrap();
    // A module importing WASI, as `--target wasm32-wasip1` builds have.
    let mut wasi = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x23\x01\x16".to_vec();
    wasi.extend_from_slice(b"wasi_snapshot_preview1\x08fd_write\0\0");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated.wasm",
            real[..1000].to_vec(),
            "not a valid WebAssembly module",
        ),
        (
            "random.wasm",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            "not a WebAssembly file",
        ),
        (
            "native.wasm",
            b"\x7fELF\x02\x01\x01\0rest".to_vec(),
            "an ELF file",
        ),
        ("empty.wasm", Vec::new(), "empty"),
        (
            "wasi.wasm",
            wasi,
            "build it with `cargo build --target wasm32-unknown-unknown`",
        ),
    ];
    let host = host();
    for (name, bytes, expected) in cases {
        std::fs::write(dir.join(name), bytes).unwrap();
        let e = host.load(name, &dir).err().unwrap().to_string();
        assert!(e.contains(expected), "{name}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sum` as built against ABI 0.1, before 0.2 existed (`tests/fixtures/sum-abi-0.1.wasm`, from commit
/// 7d7033c): users' existing plugins must keep working.
fn abi_0_1_sum() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/sum-abi-0.1.wasm"
    ))
    .unwrap()
}

fn floats(b: &Finished, col: usize) -> Vec<f64> {
    match &b.columns[col].values {
        wit::Column::Float(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plugin_built_for_abi_0_1_loads_and_gives_the_results_of_its_0_2_build() {
    let host = host();
    let dir = std::env::temp_dir().join(format!("tributary-abi01-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sum01.wasm"), abi_0_1_sum()).unwrap();
    let old = host.load("sum01.wasm", &dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let new = host.load("sum", Path::new("/")).unwrap();
    assert_eq!((old.kind, old.abi), (PluginKind::Aggregate, Abi::V0_1));
    assert_eq!((new.kind, new.abi), (PluginKind::Aggregate, Abi::V0_2));
    let config = [("field".to_string(), ConfigValue::Text("streams".into()))];
    let panes = [
        Pane {
            slot: 1,
            start: Some(0),
            end: Some(60_000),
            key: Some(wit::Value::Str("rock".into())),
        },
        Pane {
            slot: 0,
            start: None,
            end: None,
            key: None,
        },
    ];
    let mut results = Vec::new();
    for plugin in [&old, &new] {
        let mut agg = host.aggregate(plugin, &config, Limits::default()).unwrap();
        assert!(agg.add(&[0, 1, 1], &batch()).unwrap().is_empty());
        let saved = agg.save(1).unwrap();
        agg.load(2, &saved).unwrap();
        agg.merge(0, 2).unwrap();
        let f = agg.finish(&panes).unwrap();
        assert_eq!(f.rows, [0, 1], "{:?}", plugin.abi);
        assert!(f.columns.iter().all(|c| c.valid.is_none()));
        let wit::Column::Int(counts) = &f.columns[1].values else {
            panic!("counts")
        };
        results.push((floats(&f, 0), counts.clone()));
    }
    assert_eq!(results[0].0, [5.0, 6.0]);
    assert_eq!(results[0], results[1]);
}

#[test]
fn a_transform_built_for_abi_0_1_loads_and_gives_the_results_of_its_0_2_build() {
    // `scale` as built at 7d7033c (ABI 0.1).
    let host = host();
    let old = host
        .load(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/scale-abi-0.1.wasm"
            ),
            Path::new("/"),
        )
        .unwrap();
    let new = host.load("scale", Path::new("/")).unwrap();
    assert_eq!((old.kind, old.abi), (PluginKind::Transform, Abi::V0_1));
    assert_eq!((new.kind, new.abi), (PluginKind::Transform, Abi::V0_2));
    let config = [
        ("field".to_string(), ConfigValue::Text("streams".into())),
        ("factor".to_string(), ConfigValue::Float(2.5)),
    ];
    let mut results = Vec::new();
    for plugin in [&old, &new] {
        let mut t = host.transform(plugin, &config, Limits::default()).unwrap();
        assert_eq!(t.spec.outputs.len(), 1);
        let out = t.apply(&batch()).unwrap();
        assert!(out.rows.is_none() && out.errors.is_empty());
        let [wit::Column::Float(v)] = out.columns.as_slice() else {
            panic!("{:?}", out.columns)
        };
        results.push(v.clone());
    }
    assert_eq!(results[0], [2.5, 5.0, 7.5]);
    assert_eq!(results[0], results[1]);
}

#[test]
fn a_plugin_of_an_unknown_abi_version_names_the_versions_supported_and_its_own() {
    // The 0.1 fixture relabelled as 0.9: same shapes, a version this host does not know.
    let mut bytes = abi_0_1_sum();
    let (from, to) = (b"@0.1.0", b"@0.9.0");
    let mut patched = 0;
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            patched += 1;
        }
    }
    assert!(patched > 2, "the fixture names its version");
    let dir = std::env::temp_dir().join(format!("tributary-abi09-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("future.wasm"), bytes).unwrap();
    let e = host().load("future.wasm", &dir).err().unwrap().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(e.starts_with("`future.wasm` is not a valid plugin"), "{e}");
    assert!(
        e.contains("it exports `tributary:plugin/aggregate@0.9.0`"),
        "{e}"
    );
    assert!(e.contains("(0.1.0 and 0.2.0)"), "{e}");
}

#[test]
fn finish_sees_window_bounds_and_keys_and_returns_rows_and_nulls() {
    let host = host();
    let plugin = host
        .load(env!("TRIBUTARY_TEST_PLUGIN_PROBE"), Path::new("/"))
        .unwrap();
    assert_eq!(plugin.abi, Abi::V0_2);
    let mut agg = host.aggregate(&plugin, &[], Limits::default()).unwrap();
    let none = wit::Batch {
        rows: 4,
        columns: vec![],
    };
    agg.add(&[3, 5, 5, 3], &none).unwrap();
    agg.add(
        &[7],
        &wit::Batch {
            rows: 1,
            columns: vec![],
        },
    )
    .unwrap();
    let pane = |slot, bounds: Option<(i64, i64)>, key| Pane {
        slot,
        start: bounds.map(|b| b.0),
        end: bounds.map(|b| b.1),
        key,
    };
    let f = agg
        .finish(&[
            pane(5, Some((60_000, 120_000)), Some(wit::Value::Int(-4))),
            pane(9, Some((0, 1)), None),
            pane(7, None, Some(wit::Value::Str("Jazz".into()))),
            pane(3, None, None),
        ])
        .unwrap();
    assert_eq!(
        f.rows,
        [0, 0, 2, 3, 3],
        "two rows for slot 5, none for empty 9"
    );
    let ints = |c: usize| match &f.columns[c].values {
        wit::Column::Int(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ints(0)[..2], [60_000, 60_000]);
    assert_eq!(ints(1)[..2], [120_000, 120_000]);
    assert_eq!(
        f.columns[0].valid,
        Some(vec![true, true, false, false, false])
    );
    let wit::Column::Str(keys) = &f.columns[2].values else {
        panic!()
    };
    let key = |r: usize| keys.dict[keys.codes[r] as usize].as_str();
    assert_eq!((key(0), key(2)), ("int:-4", "str:Jazz"));
    assert_eq!(
        f.columns[2].valid,
        Some(vec![true, true, true, false, false])
    );
    assert_eq!(f.columns[3].valid, None);
    assert_eq!(ints(3), [2, 2, 1, 2, 2]);
}
