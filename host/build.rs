//! Builds the bundled plugins for wasm32 and embeds them in the host binary, so a fresh clone needs no
//! extra step and `plugin = "average"` works from any directory.
//!
//! The plugins live in their own workspace (`plugins/`) because they target wasm32. Each is built with
//! its own `cargo build -p NAME`: the SDK's `transform` and `aggregate` features pick the component world
//! and must not be unified into one build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";
/// (crate name, plugin kind). Adding a bundled plugin is one line here plus its crate.
const BUNDLED: &[(&str, &str)] = &[
    ("scale", "transform"),
    ("average", "aggregate"),
    ("max", "aggregate"),
    ("sum", "aggregate"),
    ("top_k", "aggregate"),
];

/// Plugins built for the tests only (misbehaving on purpose), never bundled; the tests find each at the
/// path in `TRIBUTARY_TEST_PLUGIN_<NAME>`.
const TEST_PLUGINS: &[&str] = &["hostile", "probe", "reshape", "fragile"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let plugins = manifest_dir.parent().unwrap().join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>/out; the guests get a directory of their own beside it.
    let target_dir = out_dir.ancestors().nth(4).unwrap().join("plugins");

    for path in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(path).display());
    }
    for name in BUNDLED
        .iter()
        .map(|(n, _)| *n)
        .chain(TEST_PLUGINS.iter().copied())
    {
        println!("cargo:rerun-if-changed={}", plugins.join(name).display());
    }

    ensure_target();
    let mut table = String::from(
        "/// Plugins built from `plugins/` and embedded: (name, kind, core wasm module).\n",
    );
    table.push_str("pub const BUNDLED: &[(&str, &str, &[u8])] = &[\n");
    for (name, kind) in BUNDLED {
        let wasm = build_plugin(&plugins, &target_dir, name);
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
        table.push_str(&format!(
            "    ({name:?}, {kind:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("bundled.rs"), table).unwrap();
    embed_sdk(&plugins, &out_dir);
    println!(
        "cargo:rustc-env=TRIBUTARY_HOST_TARGET={}",
        env::var("TARGET").unwrap()
    );
    for name in TEST_PLUGINS {
        let wasm = build_plugin(&plugins, &target_dir, name);
        let var = format!("TRIBUTARY_TEST_PLUGIN_{}", name.to_uppercase());
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

/// Embeds the SDK's sources and the WIT, for `tributary plugin new` to copy into a new plugin's crate:
/// (path in the new crate, text). The SDK finds the WIT at `../wit`, so it goes beside the SDK.
fn embed_sdk(plugins: &Path, out_dir: &Path) {
    let mut files = vec![(
        "tributary-sdk/Cargo.toml".to_string(),
        plugins.join("sdk/Cargo.toml"),
    )];
    for (dir, into) in [("sdk/src", "tributary-sdk/src"), ("wit", "wit")] {
        let mut names: Vec<_> = std::fs::read_dir(plugins.join(dir))
            .unwrap_or_else(|e| panic!("read plugins/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for path in names {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            files.push((format!("{into}/{name}"), path));
        }
    }
    let mut table = String::from("/// The SDK and the WIT: (path in a new plugin crate, text).\n");
    table.push_str("pub const SDK_FILES: &[(&str, &str)] = &[\n");
    for (at, path) in files {
        table.push_str(&format!(
            "    ({at:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("sdk_files.rs"), table).unwrap();
}

/// `rust-toolchain.toml` lists the target, but rustup does not install it where `RUSTUP_AUTO_INSTALL=0`.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    if Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (needed to build the bundled plugins)");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("the {TARGET} target is missing and rustup could not be run ({e}); install it with `rustup target add {TARGET}`")
    });
    assert!(
        status.success(),
        "`rustup target add {TARGET}` failed; run it by hand and build again"
    );
}

fn build_plugin(plugins: &Path, target_dir: &Path, name: &str) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            name,
            "--target-dir",
        ])
        .arg(target_dir);
    // The outer cargo's settings (its flags, its target, clippy's wrapper) are not for the guests.
    for (key, _) in env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE")
            || key.starts_with("RUSTC_")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build plugin `{name}`: {e}"));
    assert!(
        status.success(),
        "building the bundled plugin `{name}` failed (see the output above)"
    );
    target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{name}.wasm"))
}
