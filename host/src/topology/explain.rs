//! `tributary validate --explain`: the DAG as built, stage by stage: its type, plugin, inputs and
//! outputs, and the fields it reads and writes (a plugin's come from the spec its `init` returned, so
//! they are known only once the stage is built).

use super::registry::Role;
use super::Built;
use crate::config::Pipeline;
use crate::plugin::{FieldSpec, FieldType};
use std::fmt::Write as _;

/// What a built stage says about itself: its plugin, and the fields it reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The plugin as the config names it (a bundled name or a path).
    pub plugin: Option<String>,
    /// Input fields, like `streams (float)` or `genre (key)`.
    pub reads: Vec<String>,
    /// Output fields, in the order the stage writes them.
    pub writes: Vec<String>,
    /// Input fields the stage removes from its output (a transform's renames and projections).
    pub drops: Vec<String>,
    /// The stage reads no field at all (a `blackhole` sink). A sink that lists no `reads` otherwise
    /// reads every field.
    pub reads_nothing: bool,
}

/// `streams (float)`.
pub fn describe(f: &FieldSpec) -> String {
    let ty = match f.ty {
        FieldType::Float => "float",
        FieldType::Int => "int",
        FieldType::Str => "string",
        FieldType::Boolean => "boolean",
    };
    format!("{} ({ty})", f.name)
}

impl Built {
    /// The stage's plugin and fields, as far as it declares them.
    pub fn fields(&self) -> Fields {
        match self {
            Built::Operator(op) => op.fields(),
            Built::Sink(sink) => sink.fields(),
            Built::Source(_) => Fields::default(),
        }
    }
}

/// One stage of the explanation.
#[derive(Debug)]
struct Node<'a> {
    name: &'a str,
    type_name: &'a str,
    role: Role,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
    fields: Fields,
    /// Where a plugin given as a path is, resolved against the pipeline file.
    plugin_file: Option<String>,
}

/// The DAG of a pipeline whose stages all built, in the pipeline's order.
pub fn explain(pipeline: &Pipeline, built: &[(usize, Built)]) -> String {
    let bundled = crate::plugin::bundled_names();
    let nodes: Vec<Node<'_>> = built
        .iter()
        .map(|(i, b)| {
            let stage = &pipeline.stages[*i];
            let fields = b.fields();
            let plugin_file = fields
                .plugin
                .as_deref()
                .filter(|p| !bundled.contains(p))
                .map(|p| {
                    pipeline
                        .resolve(std::path::Path::new(p))
                        .display()
                        .to_string()
                });
            Node {
                name: &stage.name,
                type_name: &stage.type_name,
                role: stage.role,
                inputs: stage.inputs.iter().map(|s| s.get_ref().as_str()).collect(),
                outputs: pipeline
                    .stages
                    .iter()
                    .filter(|d| d.inputs.iter().any(|n| n.get_ref() == &stage.name))
                    .map(|d| d.name.as_str())
                    .collect(),
                fields,
                plugin_file,
            }
        })
        .collect();
    render(&nodes)
}

fn render(nodes: &[Node<'_>]) -> String {
    let list = |v: &[&str]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = String::new();
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{} ({})", n.name, n.type_name);
        if let Some(plugin) = &n.fields.plugin {
            match &n.plugin_file {
                Some(file) => {
                    let _ = writeln!(out, "  plugin:  {plugin} ({file})");
                }
                None => {
                    let _ = writeln!(out, "  plugin:  {plugin} (bundled)");
                }
            }
        }
        let _ = writeln!(out, "  inputs:  {}", list(&n.inputs));
        let _ = writeln!(out, "  outputs: {}", list(&n.outputs));
        let fields = |v: &[String]| list(&v.iter().map(String::as_str).collect::<Vec<_>>());
        match n.role {
            Role::Source => {
                let _ = writeln!(out, "  writes:  the fields of each record's JSON payload");
            }
            Role::Operator => {
                let _ = writeln!(out, "  reads:   {}", fields(&n.fields.reads));
                let _ = writeln!(out, "  writes:  {}", fields(&n.fields.writes));
                if !n.fields.drops.is_empty() {
                    let _ = writeln!(out, "  drops:   {}", fields(&n.fields.drops));
                }
            }
            Role::Sink if n.fields.reads_nothing => {
                let _ = writeln!(out, "  reads:   nothing (it drops every record)");
            }
            Role::Sink if n.fields.reads.is_empty() => {
                let _ = writeln!(out, "  reads:   every field of its input records");
            }
            Role::Sink => {
                let _ = writeln!(out, "  reads:   {}", fields(&n.fields.reads));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_shows_its_edges_plugin_and_fields() {
        let nodes = [
            Node {
                name: "events",
                type_name: "replay",
                role: Role::Source,
                inputs: vec![],
                outputs: vec!["scaled"],
                fields: Fields::default(),
                plugin_file: None,
            },
            Node {
                name: "scaled",
                type_name: "transform",
                role: Role::Operator,
                inputs: vec!["events"],
                outputs: vec!["a", "b"],
                fields: Fields {
                    plugin: Some("my.wasm".into()),
                    reads: vec!["streams (float)".into()],
                    writes: vec!["streams (float)".into(), "artist (string)".into()],
                    drops: vec!["artist_name".into()],
                    reads_nothing: false,
                },
                plugin_file: Some("/p/my.wasm".into()),
            },
            Node {
                name: "chart",
                type_name: "chart",
                role: Role::Sink,
                inputs: vec!["scaled"],
                outputs: vec![],
                fields: Fields {
                    reads: vec!["genre".into(), "avg".into()],
                    ..Fields::default()
                },
                plugin_file: None,
            },
            Node {
                name: "file",
                type_name: "file",
                role: Role::Sink,
                inputs: vec!["scaled"],
                outputs: vec![],
                fields: Fields::default(),
                plugin_file: None,
            },
            Node {
                name: "drop",
                type_name: "blackhole",
                role: Role::Sink,
                inputs: vec!["scaled"],
                outputs: vec![],
                fields: Fields {
                    reads_nothing: true,
                    ..Fields::default()
                },
                plugin_file: None,
            },
        ];
        assert_eq!(
            render(&nodes),
            "events (replay)\n  inputs:  -\n  outputs: scaled\n  writes:  the fields of each record's JSON payload\n\n\
             scaled (transform)\n  plugin:  my.wasm (/p/my.wasm)\n  inputs:  events\n  outputs: a, b\n  reads:   streams (float)\n  writes:  streams (float), artist (string)\n  drops:   artist_name\n\n\
             chart (chart)\n  inputs:  scaled\n  outputs: -\n  reads:   genre, avg\n\n\
             file (file)\n  inputs:  scaled\n  outputs: -\n  reads:   every field of its input records\n\n\
             drop (blackhole)\n  inputs:  scaled\n  outputs: -\n  reads:   nothing (it drops every record)\n"
        );
    }
}
