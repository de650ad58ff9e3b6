//! The plugin authoring kit behind `tributary plugin new | describe | test`: a new plugin crate from a
//! template with the SDK copied in, a plugin's declared interface, and a one-stage pipeline that runs a
//! plugin on sample records.

use crate::plugin::{FieldSpec, FieldType, Plugin, PluginHost, PluginKind};
use std::path::{Path, PathBuf};

mod sdk {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// The target the plugin's native unit tests build for (`cargo test-native`): this machine's.
const HOST_TARGET: &str = env!("TRIBUTARY_HOST_TARGET");

const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.in");
const CARGO_CONFIG: &str = include_str!("../templates/plugin/cargo-config.toml.in");
const GITIGNORE: &str = include_str!("../templates/plugin/gitignore.in");
const README: &str = include_str!("../templates/plugin/README.md.in");
const AGGREGATE_RS: &str = include_str!("../templates/plugin/aggregate.rs.in");
const TRANSFORM_RS: &str = include_str!("../templates/plugin/transform.rs.in");

#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    #[error("`{0}` cannot name a plugin crate: use lowercase letters, digits, `_` and `-`, starting with a letter, like `my_average`")]
    BadName(String),
    #[error("`{}` exists and is not empty; choose another name or `--dir`", .0.display())]
    Exists(PathBuf),
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`--config {0}` is not `KEY=VALUE`, like `--config field=streams`")]
    BadConfig(String),
}

/// What `plugin new` made.
pub struct NewPlugin {
    pub dir: PathBuf,
    /// Where `cargo build --release` in `dir` puts the plugin.
    pub wasm: PathBuf,
}

/// Creates the crate of a new plugin in `parent/name`: a crate of its own (outside any workspace) that
/// builds the `.wasm` by default, with an example plugin of `kind`, its unit test, the SDK and a README.
pub fn new_plugin(
    name: &str,
    kind: PluginKind,
    parent: &Path,
) -> Result<NewPlugin, AuthoringError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64;
    if !valid {
        return Err(AuthoringError::BadName(name.to_string()));
    }
    let dir = parent.join(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(AuthoringError::Exists(dir));
    }
    // Cargo names the artifact after the crate with `-` turned into `_`.
    let krate = name.replace('-', "_");
    let (example_config, lib) = match kind {
        PluginKind::Aggregate => ("--config field=streams", AGGREGATE_RS),
        PluginKind::Transform => ("--config field=streams --config min=1", TRANSFORM_RS),
    };
    let stage_toml = match kind {
        PluginKind::Aggregate => format!(
            "[stages.{krate}]\ntype = \"window\"\ninputs = [\"events\"]\nplugin = \"/path/to/{name}/target/wasm32-unknown-unknown/release/{krate}.wasm\"\nconfig = {{ field = \"streams\" }}\nkey = \"genre\"\nwindow = {{ kind = \"tumbling\", size = \"1m\" }}"
        ),
        PluginKind::Transform => format!(
            "[stages.{krate}]\ntype = \"transform\"\ninputs = [\"events\"]\nplugin = \"/path/to/{name}/target/wasm32-unknown-unknown/release/{krate}.wasm\"\nconfig = {{ field = \"streams\", min = 1 }}"
        ),
    };
    let test_extra = match kind {
        PluginKind::Aggregate => " --key genre --window 1m",
        PluginKind::Transform => "",
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &krate)
            .replace("{{kind}}", kind.as_str())
            .replace("{{host_target}}", HOST_TARGET)
            .replace("{{describe_config}}", example_config)
            .replace("{{test_extra}}", test_extra)
            .replace("{{stage_toml}}", &stage_toml)
    };
    let mut files: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), fill(CARGO_TOML)),
        (".cargo/config.toml".into(), fill(CARGO_CONFIG)),
        (".gitignore".into(), GITIGNORE.into()),
        ("README.md".into(), fill(README)),
        ("src/lib.rs".into(), fill(lib)),
    ];
    for (path, text) in sdk::SDK_FILES {
        // The SDK inherits its edition and licence from the plugins' workspace, which is not copied.
        let text = if *path == "tributary-sdk/Cargo.toml" {
            text.replace("edition.workspace = true", "edition = \"2021\"")
                .replace("license.workspace = true", "license = \"Apache-2.0\"")
        } else {
            text.to_string()
        };
        files.push((path.to_string(), text));
    }
    for (path, text) in files {
        let path = dir.join(path);
        let write = || {
            std::fs::create_dir_all(path.parent().expect("a file in the crate"))?;
            std::fs::write(&path, &text)
        };
        write().map_err(|source| AuthoringError::Write {
            path: path.clone(),
            source,
        })?;
    }
    let wasm = dir
        .join("target/wasm32-unknown-unknown/release")
        .join(format!("{krate}.wasm"));
    Ok(NewPlugin { dir, wasm })
}

/// `--config KEY=VALUE` pairs as a plugin's config table: a value that reads as a TOML value (a number,
/// `true`, a quoted string) is that value, anything else is text, so `field=streams` needs no quotes.
pub fn config_table(pairs: &[String]) -> Result<toml::Table, AuthoringError> {
    let mut table = toml::Table::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(AuthoringError::BadConfig(pair.clone()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthoringError::BadConfig(pair.clone()));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !matches!(v, toml::Value::Array(_) | toml::Value::Table(_)))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        table.insert(key.to_string(), value);
    }
    Ok(table)
}

/// What a plugin declares once given `config`: its kind, the ABI, the fields it reads and writes.
pub fn describe(
    host: &PluginHost,
    plugin: &Plugin,
    config: &toml::Table,
) -> Result<String, crate::plugin::PluginError> {
    let entries = crate::config::plugin_entries(config).map_err(|message| {
        crate::plugin::PluginError::Init {
            what: plugin.what.clone(),
            message,
        }
    })?;
    let limits = crate::plugin::Limits::default();
    let spec = match plugin.kind {
        PluginKind::Transform => host.transform(plugin, &entries, limits)?.spec,
        PluginKind::Aggregate => host.aggregate(plugin, &entries, limits)?.spec,
    };
    let fields = |fields: &[FieldSpec]| -> String {
        if fields.is_empty() {
            return "  (none)\n".into();
        }
        fields
            .iter()
            .map(|f| {
                let ty = match f.ty {
                    FieldType::Float => "float",
                    FieldType::Int => "int",
                    FieldType::Str => "str",
                    FieldType::Boolean => "boolean",
                };
                format!("  {:<20} {ty}\n", f.name)
            })
            .collect()
    };
    let shown: Vec<String> = config.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let drops: String = spec.drops.iter().map(|d| format!("  {d}\n")).collect();
    Ok(format!(
        "plugin  {}\nkind    {}\nabi     tributary:plugin@{}\nconfig  {{ {} }}\nreads\n{}writes\n{}{}",
        plugin.what,
        plugin.kind.as_str(),
        plugin.abi.version(),
        shown.join(", "),
        fields(&spec.inputs),
        fields(&spec.outputs),
        if drops.is_empty() {
            String::new()
        } else {
            format!("drops\n{drops}")
        },
    ))
}

/// The version of the plugin ABI this tributary speaks, from the `package` line of its WIT.
pub fn abi_version() -> &'static str {
    sdk::SDK_FILES
        .iter()
        .filter(|(path, _)| path.starts_with("wit/"))
        .flat_map(|(_, text)| text.lines())
        .find_map(|l| {
            l.trim()
                .strip_prefix("package tributary:plugin@")?
                .strip_suffix(';')
        })
        .unwrap_or("unknown")
}

/// How `plugin test` runs a plugin.
pub struct TestRun<'a> {
    pub plugin: &'a Path,
    pub kind: PluginKind,
    pub config: &'a toml::Table,
    pub input: &'a Path,
    /// Tumbling window size for an aggregate (`1m`); `None`: one global window.
    pub window: Option<&'a str>,
    /// The field an aggregate groups by.
    pub key: Option<&'a str>,
    /// Rows printed at most.
    pub rows: usize,
    /// Where the run writes its dead letters.
    pub dead_letter: &'a Path,
}

/// A pipeline that replays `input` through the plugin into a table on standard output.
pub fn test_pipeline(t: &TestRun<'_>) -> String {
    let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let config = toml::Value::Table(t.config.clone()).to_string();
    let mut text = format!(
        "[dead_letter]\npath = {}\n\n[stages.input]\ntype = \"replay\"\npath = {}\n\n[stages.plugin]\n",
        quote(t.dead_letter),
        quote(t.input)
    );
    match t.kind {
        PluginKind::Transform => text.push_str("type = \"transform\"\n"),
        PluginKind::Aggregate => {
            text.push_str("type = \"window\"\n");
            match t.window {
                Some(size) => text.push_str(&format!(
                    "window = {{ kind = \"tumbling\", size = {} }}\n",
                    toml::Value::String(size.to_string())
                )),
                None => text.push_str("window = { kind = \"global\" }\n"),
            }
            if let Some(key) = t.key {
                text.push_str(&format!("key = {}\n", toml::Value::String(key.to_string())));
            }
        }
    }
    text.push_str(&format!(
        "inputs = [\"input\"]\nplugin = {}\nconfig = {config}\n\n[stages.out]\ntype = \"console\"\ninputs = [\"plugin\"]\ntitle = {}\ntop = {}\n",
        quote(t.plugin),
        toml::Value::String(format!("{} on {}", t.plugin.display(), t.input.display())),
        t.rows
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_version_comes_from_the_wit_and_is_the_newest_the_host_loads() {
        assert_eq!(abi_version(), crate::plugin::Abi::V0_4.version());
    }

    #[test]
    fn config_values_read_as_toml_or_text() {
        let t = config_table(&[
            "field=streams".into(),
            "factor=1e8".into(),
            "k=3".into(),
            "on=true".into(),
            "quoted=\"a b\"".into(),
            "list=[1]".into(),
        ])
        .unwrap();
        assert_eq!(t["field"], toml::Value::String("streams".into()));
        assert_eq!(t["factor"], toml::Value::Float(1e8));
        assert_eq!(t["k"], toml::Value::Integer(3));
        assert_eq!(t["on"], toml::Value::Boolean(true));
        assert_eq!(t["quoted"], toml::Value::String("a b".into()));
        assert_eq!(
            t["list"],
            toml::Value::String("[1]".into()),
            "no nested values"
        );
        assert!(matches!(
            config_table(&["field".into()]),
            Err(AuthoringError::BadConfig(_))
        ));
    }

    #[test]
    fn a_new_crate_holds_the_sdk_and_refuses_bad_names_and_full_directories() {
        let dir = std::env::temp_dir().join(format!("tributary-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(
            new_plugin("My Plugin", PluginKind::Aggregate, &dir),
            Err(AuthoringError::BadName(_))
        ));
        let made = new_plugin("my-avg", PluginKind::Aggregate, &dir).unwrap();
        assert_eq!(
            made.wasm,
            dir.join("my-avg/target/wasm32-unknown-unknown/release/my_avg.wasm")
        );
        for file in [
            "Cargo.toml",
            ".cargo/config.toml",
            "src/lib.rs",
            "README.md",
            "tributary-sdk/Cargo.toml",
            "tributary-sdk/src/lib.rs",
        ] {
            assert!(made.dir.join(file).is_file(), "{file} missing");
        }
        assert!(std::fs::read_dir(made.dir.join("wit")).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "wit")));
        let sdk = std::fs::read_to_string(made.dir.join("tributary-sdk/Cargo.toml")).unwrap();
        assert!(!sdk.contains(".workspace"), "{sdk}");
        let manifest = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-avg\"") && manifest.contains("[workspace]"));
        assert!(matches!(
            new_plugin("my-avg", PluginKind::Aggregate, &dir),
            Err(AuthoringError::Exists(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_test_pipeline_is_valid_toml_with_the_plugin_in_the_middle() {
        let config = config_table(&["field=streams".into()]).unwrap();
        let text = test_pipeline(&TestRun {
            plugin: Path::new("/p/a \"b\".wasm"),
            kind: PluginKind::Aggregate,
            config: &config,
            input: Path::new("/in.jsonl"),
            window: Some("1m"),
            key: Some("genre"),
            rows: 20,
            dead_letter: Path::new("/tmp/dl.jsonl"),
        });
        let t: toml::Table = toml::from_str(&text).unwrap();
        let plugin = &t["stages"]["plugin"];
        assert_eq!(plugin["type"].as_str(), Some("window"));
        assert_eq!(plugin["plugin"].as_str(), Some("/p/a \"b\".wasm"));
        assert_eq!(plugin["key"].as_str(), Some("genre"));
        assert_eq!(plugin["window"]["size"].as_str(), Some("1m"));
        assert_eq!(plugin["config"]["field"].as_str(), Some("streams"));
        assert_eq!(t["stages"]["out"]["top"].as_integer(), Some(20));
    }
}
