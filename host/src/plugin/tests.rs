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

/// A plugin as built against an older ABI, kept in `tests/fixtures`: `sum-abi-0.1.wasm` (from commit
/// 7d7033c, before 0.2), `sum-abi-0.2.wasm` (from 0e97345, before 0.3) and `sum-abi-0.3.wasm` (from
/// 335b35a, before 0.4), the same for `scale`. Users' existing plugins must keep working.
fn old_build(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Loads the fixture `name` through a file, as a user's plugin is loaded.
fn load_old(host: &PluginHost, name: &str) -> Plugin {
    // A directory per call: tests run in parallel, and two loading the same fixture would otherwise
    // remove each other's file.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tributary-old-abi-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), old_build(name)).unwrap();
    let plugin = host.load(name, &dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    plugin
}

fn floats(b: &Finished, col: usize) -> Vec<f64> {
    match &b.columns[col].values {
        wit::Column::Float(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn aggregates_built_for_abi_0_1_to_0_3_load_and_give_the_results_of_the_0_4_build() {
    let host = host();
    let builds = [
        load_old(&host, "sum-abi-0.1.wasm"),
        load_old(&host, "sum-abi-0.2.wasm"),
        load_old(&host, "sum-abi-0.3.wasm"),
        host.load("sum", Path::new("/")).unwrap(),
    ];
    let abis: Vec<_> = builds.iter().map(|p| (p.kind, p.abi)).collect();
    assert_eq!(
        abis,
        [Abi::V0_1, Abi::V0_2, Abi::V0_3, Abi::V0_4].map(|abi| (PluginKind::Aggregate, abi))
    );
    let config = [("field".to_string(), ConfigValue::Text("streams".into()))];
    let pane = |slot, key| Pane {
        slot,
        start: Some(0),
        end: Some(60_000),
        key,
    };
    let panes = Panes::from_list(&[pane(1, Some(wit::Value::Str("rock".into()))), pane(0, None)]);
    let mut results = Vec::new();
    for plugin in &builds {
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
    for other in &results[1..] {
        assert_eq!(&results[0], other);
    }
}

#[test]
fn transforms_built_for_abi_0_1_to_0_3_load_and_give_the_results_of_the_0_4_build() {
    let host = host();
    let builds = [
        load_old(&host, "scale-abi-0.1.wasm"),
        load_old(&host, "scale-abi-0.2.wasm"),
        load_old(&host, "scale-abi-0.3.wasm"),
        host.load("scale", Path::new("/")).unwrap(),
    ];
    let abis: Vec<_> = builds.iter().map(|p| (p.kind, p.abi)).collect();
    assert_eq!(
        abis,
        [Abi::V0_1, Abi::V0_2, Abi::V0_3, Abi::V0_4].map(|abi| (PluginKind::Transform, abi))
    );
    let config = [
        ("field".to_string(), ConfigValue::Text("streams".into())),
        ("factor".to_string(), ConfigValue::Float(2.5)),
    ];
    let mut results = Vec::new();
    for plugin in &builds {
        let mut t = host.transform(plugin, &config, Limits::default()).unwrap();
        assert_eq!(t.spec.outputs.len(), 1);
        assert!(t.spec.drops.is_empty());
        let out = t.apply(&batch()).unwrap();
        assert!(out.rows.is_none() && out.errors.is_empty());
        let [wit::NullableColumn {
            values: wit::Column::Float(v),
            valid: None,
        }] = out.columns.as_slice()
        else {
            panic!("{:?}", out.columns)
        };
        results.push(v.clone());
        // Before 0.3 a transform had no `finish`: the host answers for it, with no rows.
        assert_eq!(t.finish().unwrap().rows, 0);
    }
    assert_eq!(results[0], [2.5, 5.0, 7.5]);
    for other in &results[1..] {
        assert_eq!(&results[0], other);
    }
}

#[test]
fn a_transform_declares_what_it_drops_writes_nulls_and_adds_rows_at_the_end() {
    let host = host();
    let plugin = host
        .load(env!("TRIBUTARY_TEST_PLUGIN_RESHAPE"), Path::new("/"))
        .unwrap();
    assert_eq!(plugin.abi, Abi::V0_4);
    let config = [("drop".to_string(), ConfigValue::Text("year".into()))];
    let mut t = host.transform(&plugin, &config, Limits::default()).unwrap();
    assert_eq!(t.spec.drops, ["genre", "year"]);
    let input = wit::Batch {
        rows: 3,
        columns: vec![
            wit::Column::Str(wit::DictColumn {
                dict: vec!["pop".into()],
                codes: vec![0, 0, 0],
            }),
            wit::Column::Float(vec![1.0, -2.0, 3.0]),
        ],
    };
    let out = t.apply(&input).unwrap();
    assert_eq!(out.columns[1].valid, Some(vec![true, false, true]));
    let end = t.finish().unwrap();
    assert_eq!(end.rows, 1);
    let wit::Column::Float(total) = &end.columns[1].values else {
        panic!("{:?}", end.columns)
    };
    assert_eq!(total, &[4.0]);
}

#[test]
fn a_plugin_of_an_unknown_abi_version_names_the_versions_supported_and_its_own() {
    // The 0.1 fixture relabelled as 0.9: same shapes, a version this host does not know.
    let mut bytes = old_build("sum-abi-0.1.wasm");
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
    assert!(e.contains("(0.1.0, 0.2.0, 0.3.0 and 0.4.0)"), "{e}");
}

#[test]
fn finish_sees_window_bounds_and_keys_and_returns_rows_and_nulls() {
    let host = host();
    let plugin = host
        .load(env!("TRIBUTARY_TEST_PLUGIN_PROBE"), Path::new("/"))
        .unwrap();
    assert_eq!(plugin.abi, Abi::V0_4);
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
    let ints = |f: &Finished, c: usize| match &f.columns[c].values {
        wit::Column::Int(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    let keys = |f: &Finished| {
        let wit::Column::Str(keys) = &f.columns[2].values else {
            panic!()
        };
        (0..f.rows.len())
            .map(|r| keys.dict[keys.codes[r] as usize].clone())
            .collect::<Vec<_>>()
    };
    // Keys of different types (and a null one) cross as a list of values.
    let f = agg
        .finish(&Panes::from_list(&[
            pane(5, Some((60_000, 120_000)), Some(wit::Value::Int(-4))),
            pane(9, Some((0, 1)), None),
            pane(7, Some((0, 1)), Some(wit::Value::Str("Jazz".into()))),
        ]))
        .unwrap();
    assert_eq!(f.rows, [0, 0, 2], "two rows for slot 5, none for empty 9");
    assert_eq!(ints(&f, 0), [60_000, 60_000, 0]);
    assert_eq!(ints(&f, 1), [120_000, 120_000, 1]);
    assert_eq!(f.columns[0].valid, None);
    assert_eq!(keys(&f), ["int:-4", "int:-4", "str:Jazz"]);
    assert_eq!(ints(&f, 3), [2, 2, 1]);
    // Global windows; string keys (one null) cross as a dictionary.
    let f = agg
        .finish(&Panes::from_list(&[
            pane(3, None, Some(wit::Value::Str("Jazz".into()))),
            pane(5, None, None),
        ]))
        .unwrap();
    assert_eq!(f.rows, [0, 0, 1, 1]);
    assert_eq!(f.columns[0].valid, Some(vec![false; 4]));
    assert_eq!(f.columns[1].valid, Some(vec![false; 4]));
    assert_eq!(keys(&f)[..2], ["str:Jazz", "str:Jazz"]);
    assert_eq!(f.columns[2].valid, Some(vec![true, true, false, false]));
    assert_eq!(f.columns[3].valid, None);
    assert_eq!(ints(&f, 3), [2, 2, 2, 2]);
    // No key at all.
    let f = agg
        .finish(&Panes::from_list(&[pane(7, Some((0, 1)), None)]))
        .unwrap();
    assert_eq!(f.columns[2].valid, Some(vec![false]));
    assert_eq!(ints(&f, 3), [1]);
}

/// The same panes give the same results through every ABI that sees keys: 0.4's columns (a
/// dictionary, a mix of types, none) and 0.2's and 0.3's record per pane.
#[test]
fn every_abi_that_sees_keys_gives_the_same_results_for_the_same_panes() {
    let host = host();
    let builds = [
        load_old(&host, "sum-abi-0.2.wasm"),
        load_old(&host, "sum-abi-0.3.wasm"),
        host.load("sum", Path::new("/")).unwrap(),
    ];
    let config = [("field".to_string(), ConfigValue::Text("streams".into()))];
    let pane = |slot, key| Pane {
        slot,
        start: None,
        end: None,
        key,
    };
    let s = |s: &str| Some(wit::Value::Str(s.into()));
    let lists = [
        vec![pane(2, s("pop")), pane(0, s("rock")), pane(1, s("pop"))],
        vec![
            pane(1, s("7")),
            pane(0, Some(wit::Value::Int(7))),
            pane(2, None),
        ],
        vec![pane(0, None), pane(2, None)],
    ];
    for list in &lists {
        let mut results = Vec::new();
        for plugin in &builds {
            let mut agg = host.aggregate(plugin, &config, Limits::default()).unwrap();
            agg.add(&[0, 1, 2], &batch()).unwrap();
            let f = agg.finish(&Panes::from_list(list)).unwrap();
            results.push((f.rows.clone(), floats(&f, 0)));
        }
        assert_eq!(results[0].0.len(), list.len());
        for other in &results[1..] {
            assert_eq!(&results[0], other, "{list:?}");
        }
    }
}
