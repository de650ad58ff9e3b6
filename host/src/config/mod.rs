//! `pipeline.toml` → a validated list of stages. Every problem is collected and reported together, each
//! with file, line and column.

mod bytesize;
mod diagnostic;
mod duration;
mod on_error;
mod redact;

pub use bytesize::ByteSize;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use duration::Duration;
pub use on_error::OnError;

use crate::topology::registry::{self, Role};
use crate::topology::StageConfig;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// A parsed and checked pipeline file.
#[derive(Debug)]
pub struct Pipeline {
    pub file: PathBuf,
    pub text: String,
    /// Relative paths in the file are relative to this directory (the file's own).
    pub base_dir: PathBuf,
    pub dead_letter: DeadLetterConfig,
    pub checkpoint: CheckpointConfig,
    /// Stages in file order.
    pub stages: Vec<Stage>,
}

/// One `[stages.NAME]` table.
#[derive(Debug)]
pub struct Stage {
    pub name: String,
    pub name_span: Range<usize>,
    pub type_name: String,
    pub role: Role,
    pub inputs: Vec<Spanned<String>>,
    pub config: Box<dyn StageConfig>,
}

/// `[dead_letter]`: where records that cannot be processed go, one JSON object a line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// The dead-letter file (JSON Lines: `stage`, `reason`, the record or original line). Default
    /// `out/dead_letter.jsonl`.
    #[serde(default = "default_dead_letter_path")]
    pub path: PathBuf,
    /// `"truncate"`: start the file afresh; `"append"`: keep what earlier runs wrote (a torn last line
    /// left by a crash is removed first). Default: append when a source resumes from committed offsets
    /// (`start = "committed"`), truncate otherwise.
    pub mode: Option<crate::outfile::OutputMode>,
}

fn default_dead_letter_path() -> PathBuf {
    PathBuf::from("out/dead_letter.jsonl")
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            path: default_dead_letter_path(),
            mode: None,
        }
    }
}

/// `[checkpoint]`: where and how often a resuming pipeline saves its state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The directory of checkpoint files, relative to the pipeline file; give each pipeline its own.
    /// Default `out/checkpoints`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// How often a checkpoint is taken, like `"10s"` (the default). Kafka offsets are committed when a
    /// checkpoint is complete, so this is also how often they are.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long a clean stop (Ctrl-C, SIGTERM) may take to write its last checkpoint and commit, like
    /// `"10s"` (the default). A stop that takes longer exits all the same: the previous checkpoint
    /// stands, and a restart reads again what came after it.
    #[serde(default = "default_interval")]
    pub shutdown_timeout: Duration,
}

fn default_dir() -> PathBuf {
    PathBuf::from("out/checkpoints")
}

fn default_interval() -> Duration {
    Duration(10_000)
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: default_dir(),
            interval: default_interval(),
            shutdown_timeout: default_interval(),
        }
    }
}

impl Pipeline {
    /// Whether a source resumes where an earlier run stopped (see [`StageConfig::resumes`]).
    pub fn resumes(&self) -> bool {
        self.stages.iter().any(|s| s.config.resumes())
    }

    /// The stages whose records reach `stage`, directly or through others, nearest first.
    pub fn upstream(&self, stage: &str) -> Vec<&Stage> {
        self.reach(stage, |from, s| {
            from.inputs.iter().any(|i| *i.get_ref() == s.name)
        })
    }

    /// The stages that `stage`'s records reach, directly or through others, nearest first.
    pub fn downstream(&self, stage: &str) -> Vec<&Stage> {
        self.reach(stage, |from, s| {
            s.inputs.iter().any(|i| *i.get_ref() == from.name)
        })
    }

    /// A breadth-first walk from `stage` along `linked(from, to)`, in file order at each step.
    fn reach(&self, stage: &str, linked: impl Fn(&Stage, &Stage) -> bool) -> Vec<&Stage> {
        let Some(start) = self.stages.iter().find(|s| s.name == stage) else {
            return Vec::new();
        };
        let mut reached = vec![start];
        let mut i = 0;
        while i < reached.len() {
            let from = reached[i];
            for s in &self.stages {
                if linked(from, s) && !reached.iter().any(|r| r.name == s.name) {
                    reached.push(s);
                }
            }
            i += 1;
        }
        reached.remove(0);
        reached
    }

    /// Reads and checks a pipeline file.
    pub fn load(file: &Path) -> Result<Pipeline, Diagnostics> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                file,
                "",
                None,
                format!("cannot read the pipeline file: {e}"),
            )])
        })?;
        Self::parse(file, text)
    }

    /// Checks a pipeline given as text; `file` names it in messages and anchors relative paths.
    pub fn parse(file: &Path, text: String) -> Result<Pipeline, Diagnostics> {
        let mut problems = Problems {
            file,
            text: &text,
            list: Vec::new(),
        };
        let (stages, nodes, dead_letter, checkpoint) = parse_document(&text, &mut problems);
        check_graph(&nodes, &mut problems);
        if !problems.list.is_empty() {
            return Err(Diagnostics(problems.list));
        }
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let mut pipeline = Pipeline {
            file: file.to_path_buf(),
            text,
            base_dir,
            dead_letter,
            checkpoint,
            stages,
        };
        crate::exchange::rewrite(&mut pipeline);
        Ok(pipeline)
    }

    /// A diagnostic anchored in this file, for problems found while building stages.
    pub fn diagnostic(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, &self.text, span, message)
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<Diagnostic>,
}

impl Problems<'_> {
    fn add(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.list
            .push(Diagnostic::new(self.file, self.text, span, message));
    }

    fn toml(&mut self, err: toml::de::Error, fallback: Range<usize>, context: &str) {
        let message = err.message().trim_end().to_string();
        self.add(
            Some(err.span().unwrap_or(fallback)),
            format!("{context}{message}"),
        );
    }
}

fn parse_document(
    text: &str,
    problems: &mut Problems,
) -> (Vec<Stage>, Vec<Node>, DeadLetterConfig, CheckpointConfig) {
    let (root, errors) = DeTable::parse_recoverable(text);
    let had_syntax_errors = !errors.is_empty();
    for e in errors {
        problems.toml(e, 0..0, "invalid TOML: ");
    }
    let root_span = root.span();
    let mut stages = Vec::new();
    let mut nodes = Vec::new();
    let mut dead_letter = DeadLetterConfig::default();
    let mut checkpoint = CheckpointConfig::default();
    let mut saw_stages = false;
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "stages" => {
                saw_stages = true;
                let span = value.span();
                match value.into_inner() {
                    DeValue::Table(table) => {
                        for (name, stage) in table {
                            if let Some(s) = parse_stage(name, stage, problems, &mut nodes) {
                                stages.push(s);
                            }
                        }
                    }
                    _ => problems.add(
                        Some(span),
                        "`stages` must be a table of stages, like `[stages.events]`",
                    ),
                }
            }
            "dead_letter" => {
                let span = value.span();
                match DeadLetterConfig::deserialize(ValueDeserializer::from(value)) {
                    Ok(c) => dead_letter = c,
                    Err(e) => problems.toml(e, span, "in `[dead_letter]`: "),
                }
            }
            "checkpoint" => {
                let span = value.span();
                match CheckpointConfig::deserialize(ValueDeserializer::from(value)) {
                    Ok(c) if c.interval.millis() <= 0 => problems.add(
                        Some(span),
                        "in `[checkpoint]`: `interval` must be longer than 0, like `interval = \"10s\"`",
                    ),
                    Ok(c) => checkpoint = c,
                    Err(e) => problems.toml(e, span, "in `[checkpoint]`: "),
                }
            }
            other => problems.add(
                Some(key.span()),
                format!("unknown top-level key `{other}`; expected `stages`, `dead_letter` or `checkpoint`"),
            ),
        }
    }
    if !saw_stages && !had_syntax_errors {
        problems.add(
            Some(root_span.start..root_span.start),
            "no stages: add a `[stages.NAME]` table for each stage",
        );
    }
    (stages, nodes, dead_letter, checkpoint)
}

/// What the graph checks need of a stage. Stages whose own table has problems are here too, so that
/// their inputs are still checked and the stages reading from them are not told they do not exist.
struct Node {
    name: String,
    name_span: Range<usize>,
    type_name: String,
    /// `None` when the type is missing or unknown (reported already): no role to check.
    role: Option<Role>,
    inputs: Vec<Spanned<String>>,
}

fn parse_stage(
    name: Spanned<toml::de::DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    problems: &mut Problems,
    nodes: &mut Vec<Node>,
) -> Option<Stage> {
    let name_span = name.span();
    let name = name.into_inner().to_string();
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        problems.add(
            Some(span),
            format!("stage `{name}` must be a table, like `[stages.{name}]`"),
        );
        return None;
    };
    let type_value = table.remove("type");
    let inputs_value = table.remove("inputs");

    let inputs = match inputs_value {
        None => Vec::new(),
        Some(v) => {
            let vspan = v.span();
            match <Vec<Spanned<String>>>::deserialize(ValueDeserializer::from(v)) {
                Ok(list) => list,
                Err(_) => {
                    problems.add(
                        Some(vspan),
                        format!(
                            "`inputs` of stage `{name}` must be a list of stage names, like `inputs = [\"events\"]`"
                        ),
                    );
                    Vec::new()
                }
            }
        }
    };
    let mut node = Node {
        name: name.clone(),
        name_span: name_span.clone(),
        type_name: String::new(),
        role: None,
        inputs: inputs.clone(),
    };

    let type_name = match type_value {
        None => {
            problems.add(
                Some(name_span.clone()),
                format!(
                    "stage `{name}` has no `type`; add `type = \"...\"` with one of: {}",
                    registry::type_names().join(", ")
                ),
            );
            nodes.push(node);
            return None;
        }
        Some(v) => match v.get_ref().as_str() {
            Some(s) => Spanned::new(v.span(), s.to_string()),
            None => {
                problems.add(
                    Some(v.span()),
                    format!("`type` of stage `{name}` must be a string"),
                );
                nodes.push(node);
                return None;
            }
        },
    };
    node.type_name = type_name.get_ref().clone();
    let Some(registration) = registry::find(type_name.get_ref()) else {
        problems.add(
            Some(type_name.span()),
            format!(
                "unknown stage type `{}` in stage `{name}`; valid types: {}",
                type_name.get_ref(),
                registry::type_names().join(", ")
            ),
        );
        nodes.push(node);
        return None;
    };
    node.role = Some(registration.role);
    nodes.push(node);

    // Deserializing stops at the first bad value; to report the others too, the value at fault is set
    // aside and the rest tried again, until the rest is fine or the fault is not one value's.
    let context = format!("in stage `{name}` (type `{}`): ", type_name.get_ref());
    let mut set_aside: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    loop {
        let rest = Spanned::new(span.clone(), DeValue::Table(table.clone()));
        let e = match (registration.parse)(ValueDeserializer::from(rest)) {
            Ok(config) if set_aside.is_empty() => {
                return Some(Stage {
                    name,
                    name_span,
                    type_name: type_name.into_inner(),
                    role: registration.role,
                    inputs,
                    config,
                })
            }
            Ok(_) => return None,
            Err(e) => e,
        };
        // A value set aside is now missing: not a problem of its own; nor is a field missing because
        // its name was misspelled, which the unknown-field message already offered.
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        if let Some(field) = missing {
            let quoted = format!("`{field}`");
            if set_aside.iter().any(|k| k == field)
                || unknown.iter().any(|m: &String| m.contains(&quoted))
            {
                return None;
            }
        }
        if e.message().starts_with("unknown field") {
            unknown.push(e.message().to_string());
        }
        let at = e.span();
        problems.toml(e, span.clone(), &context);
        let inside = |outer: Range<usize>, inner: &Range<usize>| {
            outer.start <= inner.start && inner.end <= outer.end
        };
        let culprit = at.and_then(|at| {
            table
                .iter()
                .find(|(k, v)| inside(v.span(), &at) || inside(k.span(), &at))
                .map(|(k, _)| k.get_ref().to_string())
        });
        match culprit {
            Some(key) if set_aside.len() < 32 => {
                table.remove(key.as_str());
                set_aside.push(key);
            }
            _ => return None,
        }
    }
}

/// Inputs exist and fit the roles, sources have none, every non-source has some, and there is no cycle.
fn check_graph(stages: &[Node], problems: &mut Problems) {
    let by_name: HashMap<&str, &Node> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
    for stage in stages {
        match stage.role {
            Some(Role::Source) if !stage.inputs.is_empty() => problems.add(
                Some(stage.inputs[0].span()),
                format!(
                    "stage `{}` is a source (type `{}`) and takes no `inputs`; remove them",
                    stage.name, stage.type_name
                ),
            ),
            Some(Role::Operator | Role::Sink) if stage.inputs.is_empty() => problems.add(
                Some(stage.name_span.clone()),
                format!(
                    "stage `{}` (type `{}`) has no inputs; add `inputs = [\"...\"]` naming the stages it reads",
                    stage.name, stage.type_name
                ),
            ),
            _ => {}
        }
        let mut seen = HashSet::new();
        for input in &stage.inputs {
            let target = input.get_ref().as_str();
            if !seen.insert(target) {
                problems.add(
                    Some(input.span()),
                    format!("stage `{}` lists input `{target}` twice", stage.name),
                );
            }
            match by_name.get(target) {
                None => {
                    let mut names: Vec<&str> = by_name
                        .keys()
                        .copied()
                        .filter(|n| *n != stage.name)
                        .collect();
                    names.sort_unstable();
                    problems.add(
                        Some(input.span()),
                        format!(
                            "stage `{}` reads from `{target}`, which is not a stage; the other stages are: {}",
                            stage.name,
                            names.join(", ")
                        ),
                    );
                }
                Some(up) if up.role == Some(Role::Sink) => problems.add(
                    Some(input.span()),
                    format!(
                        "stage `{}` reads from `{target}`, a sink (type `{}`), which has no output",
                        stage.name, up.type_name
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(stages) {
        let first = stages.iter().find(|s| s.name == cycle[0]).unwrap();
        problems.add(
            Some(first.name_span.clone()),
            format!(
                "stages form a cycle: {}; a pipeline must be acyclic",
                cycle.join(" → ")
            ),
        );
    }
}

/// A cycle of stage names (first name repeated at the end), if any.
fn find_cycle(stages: &[Node]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; stages.len()];
    let mut path = Vec::new();
    fn visit(
        i: usize,
        stages: &[Node],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for input in &stages[i].inputs {
            let Some(&j) = index.get(input.get_ref().as_str()) else {
                continue;
            };
            if state[j] == 1 {
                let from = path.iter().position(|&p| p == j).unwrap();
                let mut names: Vec<String> = path[from..]
                    .iter()
                    .rev()
                    .map(|&p| stages[p].name.clone())
                    .collect();
                names.rotate_right(1);
                names.push(names[0].clone());
                return Some(names);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, stages, index, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    (0..stages.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, stages, &index, &mut state, &mut path)
        } else {
            None
        }
    })
}

/// A plugin's own table (`config = { ... }`), checked to hold only what plugins accept.
#[derive(Clone, Debug, Default)]
pub struct PluginConfig(pub Option<Spanned<toml::Table>>);

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PluginConfig(Some(Spanned::<toml::Table>::deserialize(d)?)))
    }
}

impl PluginConfig {
    pub fn span(&self) -> Option<Range<usize>> {
        self.0.as_ref().map(|t| t.span())
    }

    /// The entries as the plugin ABI carries them; nested values are refused with the key's name.
    pub fn entries(&self) -> Result<Vec<(String, crate::plugin::ConfigValue)>, String> {
        self.0
            .as_ref()
            .map_or(Ok(Vec::new()), |table| plugin_entries(table.get_ref()))
    }
}

/// A plugin's config table as the plugin ABI carries it; nested values are refused with the key's
/// name. Shared by pipeline stages and `tributary plugin describe/test --config`.
pub fn plugin_entries(
    table: &toml::Table,
) -> Result<Vec<(String, crate::plugin::ConfigValue)>, String> {
    use crate::plugin::ConfigValue;
    table
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => ConfigValue::Text(s.clone()),
                toml::Value::Integer(i) => ConfigValue::Integer(*i),
                toml::Value::Float(f) => ConfigValue::Float(*f),
                toml::Value::Boolean(b) => ConfigValue::Boolean(*b),
                other => {
                    return Err(format!(
                        "plugin config key `{k}` is {}; plugin configs take strings, numbers and booleans only",
                        other.type_str()
                    ))
                }
            };
            Ok((k.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Pipeline::parse(Path::new("p.toml"), text.to_string()) {
            Ok(_) => Vec::new(),
            Err(d) => {
                d.0.iter()
                    .map(|d| {
                        let (l, c) = d.line_col().unwrap_or((0, 0));
                        format!("{l}:{c}: {}", d.message)
                    })
                    .collect()
            }
        }
    }

    #[test]
    fn diagnostics_never_show_secrets() {
        for body in [
            "url = \"mongodb://app:hunter2@db/\"",
            "creds = { password = \"hunter2\" }",
            "path = \"x.jsonl\"\nsasl.password = \"hunter2",
        ] {
            let text = format!(
                "[stages.events]\ntype = \"replay\"\n{body}\n\n[stages.out]\ntype = \"file\"\ninputs = [\"events\"]\npath = \"o.jsonl\"\n"
            );
            let shown = Pipeline::parse(Path::new("p.toml"), text)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn collects_every_problem_with_positions() {
        let text = r#"
[stages.events]
type = "replay"
path = "x.jsonl"

[stages.oops]
type = "replya"

[stages.t]
type = "transform"
inputs = ["event"]
plugin = "scale"

[stages.s]
type = "file"
inputs = ["t"]
pathh = "out.jsonl"
"#;
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            e[0].starts_with("7:8: unknown stage type `replya` in stage `oops`; valid types:"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("17:1: in stage `s` (type `file`): unknown field `pathh`"),
            "{}",
            e[1]
        );
        assert!(
            e[2].starts_with("11:11: stage `t` reads from `event`, which is not a stage"),
            "{}",
            e[2]
        );
    }

    #[test]
    fn a_stage_with_a_bad_value_still_shows_its_other_problems() {
        let text = r#"
[stages.events]
type = "replay"
path = "x.jsonl"

[stages.avg]
type = "window"
inputs = ["scaled"]
plugin = "average"
key = "genre"
window = { kind = "tumbling", size = "1 minute" }
max_delay = "soon"

[stages.out]
type = "file"
inputs = ["avg"]
path = "out.jsonl"
"#;
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            e[0].starts_with("11:38: in stage `avg` (type `window`): unknown unit `minute`"),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with("12:13: in stage `avg` (type `window`):") && e[1].contains("`soon`"),
            "{e:#?}"
        );
        // Its inputs are still checked; `out`, which reads from it, hears nothing about it.
        assert!(
            e[2].starts_with("8:11: stage `avg` reads from `scaled`, which is not a stage"),
            "{e:#?}"
        );
    }

    #[test]
    fn walks_the_stage_graph_both_ways_nearest_first() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.toml");
        let pipeline = Pipeline::load(&file).unwrap();
        let names = |stages: Vec<&Stage>| -> Vec<String> {
            stages.into_iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(
            names(pipeline.upstream("top20_chart")),
            ["avg_by_genre", "scaled", "events"]
        );
        let below = names(pipeline.downstream("scaled"));
        assert_eq!(
            below[..3],
            ["avg_by_genre", "avg_by_genre_1m", "top_artists"],
            "direct readers first, in file order"
        );
        assert!(below.contains(&"trend_chart".to_string()), "{below:?}");
        assert!(!below.contains(&"events".to_string()), "{below:?}");
        assert!(pipeline.upstream("events").is_empty());
        assert!(pipeline.downstream("top20_chart").is_empty());
        assert!(pipeline.upstream("no such stage").is_empty());
    }

    #[test]
    fn finds_cycles_and_missing_inputs() {
        let text = r#"
[stages.a]
type = "transform"
inputs = ["b"]
plugin = "scale"
[stages.b]
type = "transform"
inputs = ["a"]
plugin = "scale"
[stages.c]
type = "file"
path = "x"
"#;
        let e = errors(text);
        assert!(
            e.iter()
                .any(|m| m.contains("stage `c` (type `file`) has no inputs")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("stages form a cycle: a → b → a")),
            "{e:#?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = errors("[stages.a]\ntype = \n");
        assert!(e[0].starts_with("2:"), "{e:#?}");
    }
}
