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
    assert!(e.contains("in `apply`: it panicked"), "{e}");
    assert!(!e.contains('\n'), "{e}");
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
