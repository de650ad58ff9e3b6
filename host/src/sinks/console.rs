//! `type = "console"`: prints results as a markdown table once the input ends.

use super::{ranked, rows_of};
use crate::record::{Batch, Value};
use crate::topology::{BuildContext, BuildError, Built, Output, Sink, StageConfig, StageError};
use serde::Deserialize;
use std::sync::Arc;

/// Prints the records it receives as a markdown table on standard output when the input ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A heading printed above the table.
    pub title: Option<String>,
    /// Sort rows by this numeric field, largest first (see `ascending`). Default: arrival order.
    pub sort_by: Option<String>,
    /// Sort smallest first instead. Default `false`.
    #[serde(default)]
    pub ascending: bool,
    /// Print only the first N rows after sorting. Default: all.
    pub top: Option<usize>,
    /// With `top`: count distinct values of this field instead of rows, printing every row of the
    /// first N values in sorted order. `sort_by = "genre_avg"`, `top = 5`, `group = "genre"` prints
    /// all rows of the 5 genres with the largest `genre_avg`. Default: `top` counts rows.
    pub group: Option<String>,
    /// The columns to print. Default: every field, as it is.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
}

/// One printed column.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The field shown.
    pub field: String,
    /// The column heading. Default: the field name.
    pub header: Option<String>,
    /// Multiply numbers by this before printing, e.g. `1e-9` to show billions. Default 1.
    pub scale: Option<f64>,
    /// Digits after the decimal point for numbers. Default: as many as needed.
    pub decimals: Option<usize>,
}

impl StageConfig for ConsoleConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        Ok(Built::Sink(Box::new(ConsoleSink {
            config: self.clone(),
            rows: Vec::new(),
            order: ctx.console_order.clone(),
            stage: ctx.stage.to_string(),
        })))
    }
}

pub struct ConsoleSink {
    config: ConsoleConfig,
    rows: Vec<Vec<(Arc<str>, Value)>>,
    order: Arc<PrintOrder>,
    stage: String,
}

/// The tables of a run's console sinks, printed in the order of the stages in `pipeline.toml`: sinks
/// finish on their own threads in any order, and stdout must read the same every run.
pub struct PrintOrder {
    state: std::sync::Mutex<Printing>,
}

struct Printing {
    /// The console stages in file order, and each one's table once it is done (`None` until then).
    stages: Vec<(String, Option<String>)>,
    /// How many of them have been printed.
    printed: usize,
}

impl PrintOrder {
    pub fn for_pipeline(pipeline: &crate::config::Pipeline) -> PrintOrder {
        let stages = pipeline
            .stages
            .iter()
            .filter(|s| s.type_name == "console")
            .map(|s| (s.name.clone(), None))
            .collect();
        PrintOrder {
            state: std::sync::Mutex::new(Printing { stages, printed: 0 }),
        }
    }

    /// Hands over a stage's table and prints every table whose turn has come.
    fn done(&self, stage: &str, text: String) {
        print!("{}", self.ready(stage, text));
    }

    /// Records a stage's table (once: a later call is ignored) and returns, in order, the tables
    /// whose turn has come. A stage not in the pipeline (a test's own sink) gets its table back at once.
    fn ready(&self, stage: &str, text: String) -> String {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.stages.iter_mut().find(|(name, _)| name == stage) {
            Some((_, slot)) => {
                slot.get_or_insert(text);
            }
            None => return text,
        }
        let mut out = String::new();
        while let Some((_, Some(text))) = s.stages.get(s.printed) {
            out.push_str(text);
            s.printed += 1;
        }
        out
    }

    /// A stage that ends without a table (the run was stopped) must not hold back those after it.
    fn skip(&self, stage: &str) {
        self.done(stage, String::new());
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        // Stopped or failed before `finish`: let later tables print.
        self.order.skip(&self.stage);
    }
}

/// The rows of `order` whose `group` value is among the first `top` distinct ones, in order. A row
/// without the field forms a group of its own (null).
fn first_groups(
    rows: &[Vec<(Arc<str>, Value)>],
    order: Vec<usize>,
    group: &str,
    top: Option<usize>,
) -> Vec<usize> {
    let Some(top) = top else {
        return order;
    };
    let value = |i: usize| {
        rows[i]
            .iter()
            .find(|(n, _)| &**n == group)
            .map_or(Value::Null, |(_, v)| v.clone())
    };
    let mut seen: Vec<Value> = Vec::new();
    order
        .into_iter()
        .filter(|&i| {
            let v = value(i);
            if seen.contains(&v) {
                return true;
            }
            if seen.len() < top {
                seen.push(v);
                return true;
            }
            false
        })
        .collect()
}

/// A value as printed in a table cell.
pub fn cell(v: Option<&Value>, column: &ColumnConfig) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        // As the chart sink shows them; only a plugin can make one (JSON input has none).
        Some(Value::Float(x)) if !x.is_finite() => "n/a".to_string(),
        Some(v @ (Value::Int(_) | Value::Float(_)))
            if column.scale.is_some() || column.decimals.is_some() =>
        {
            let x = v.as_f64().unwrap() * column.scale.unwrap_or(1.0);
            match column.decimals {
                Some(d) => format!("{x:.d$}"),
                None => format!("{x}"),
            }
        }
        Some(v) => v.to_string(),
    }
}

/// The most characters a table cell shows; a longer value is cut and ends in `…`. A table is for
/// reading, and a column wider than 65,535 characters would not even format.
const MAX_CELL: usize = 80;

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_CELL {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(MAX_CELL - 1).collect();
    cut.push('…');
    cut
}

/// A markdown table with padded columns, like the seed project's README. Long values are shortened.
pub fn markdown(headers: &[String], cells: &[Vec<String>]) -> String {
    let headers: Vec<String> = headers.iter().map(|h| shorten(h)).collect();
    let cells: Vec<Vec<String>> = cells
        .iter()
        .map(|r| r.iter().map(|c| shorten(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut s = line(&headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    s.push_str(&format!("|{}|\n", rule.join("|")));
    for r in &cells {
        s.push_str(&line(r));
    }
    s
}

impl Sink for ConsoleSink {
    fn fields(&self) -> crate::topology::Fields {
        let mut reads: Vec<String> = self
            .config
            .columns
            .iter()
            .map(|c| c.field.clone())
            .collect();
        // Without `columns` every field is printed: nothing to list.
        if let Some(sort) = self.config.sort_by.as_ref().filter(|_| !reads.is_empty()) {
            if !reads.contains(sort) {
                reads.push(sort.clone());
            }
        }
        crate::topology::Fields {
            reads,
            ..Default::default()
        }
    }

    fn write(&mut self, batch: &Batch, _: &mut Output) -> Result<(), StageError> {
        self.rows.extend(rows_of(batch));
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), StageError> {
        let c = &self.config;
        let columns: Vec<ColumnConfig> = if c.columns.is_empty() {
            let mut names: Vec<Arc<str>> = Vec::new();
            for row in &self.rows {
                for (n, _) in row {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
            names
                .iter()
                .map(|n| ColumnConfig {
                    field: n.to_string(),
                    header: None,
                    scale: None,
                    decimals: None,
                })
                .collect()
        } else {
            c.columns.clone()
        };
        let order = match &c.group {
            Some(group) => {
                let order = ranked(&self.rows, c.sort_by.as_deref(), c.ascending, None);
                first_groups(&self.rows, order, group, c.top)
            }
            None => ranked(&self.rows, c.sort_by.as_deref(), c.ascending, c.top),
        };
        let headers: Vec<String> = columns
            .iter()
            .map(|col| col.header.clone().unwrap_or_else(|| col.field.clone()))
            .collect();
        let cells: Vec<Vec<String>> = order
            .iter()
            .map(|&i| {
                columns
                    .iter()
                    .map(|col| {
                        cell(
                            self.rows[i]
                                .iter()
                                .find(|(n, _)| **n == *col.field)
                                .map(|(_, v)| v),
                            col,
                        )
                    })
                    .collect()
            })
            .collect();
        let mut text = String::new();
        if let Some(t) = &c.title {
            text.push_str(&format!("\n## {t}\n\n"));
        } else {
            text.push_str(&format!("\n## {}\n\n", out.stage()));
        }
        text.push_str(&markdown(&headers, &cells));
        self.order.done(&self.stage, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_print_in_pipeline_order_whichever_finishes_first() {
        let order = PrintOrder {
            state: std::sync::Mutex::new(Printing {
                stages: ["a", "b", "c"].map(|n| (n.to_string(), None)).to_vec(),
                printed: 0,
            }),
        };
        assert_eq!(order.ready("c", "C".into()), "", "waits for a and b");
        assert_eq!(order.ready("b", "B".into()), "");
        assert_eq!(
            order.ready("b", String::new()),
            "",
            "a second hand-over is ignored"
        );
        assert_eq!(order.ready("a", "A".into()), "ABC");
        assert_eq!(order.ready("x", "X".into()), "X", "not a stage: at once");
        // A stage that ends without a table (stopped) lets the others through.
        let order = PrintOrder {
            state: std::sync::Mutex::new(Printing {
                stages: ["a", "b"].map(|n| (n.to_string(), None)).to_vec(),
                printed: 0,
            }),
        };
        assert_eq!(order.ready("b", "B".into()), "");
        assert_eq!(order.ready("a", String::new()), "B");
    }

    #[test]
    fn top_with_group_counts_groups_not_rows() {
        let row = |g: &str, avg: f64, rank: i64| {
            vec![
                (Arc::from("genre"), Value::Str(g.into())),
                (Arc::from("avg"), Value::Float(avg)),
                (Arc::from("rank"), Value::Int(rank)),
            ]
        };
        let rows = vec![
            row("a", 1.0, 1),
            row("a", 1.0, 2),
            row("b", 3.0, 1),
            row("c", 2.0, 1),
            row("c", 2.0, 2),
            row("c", 2.0, 3),
        ];
        let order = ranked(&rows, Some("avg"), false, None);
        assert_eq!(
            first_groups(&rows, order.clone(), "genre", Some(2)),
            [2, 3, 4, 5],
            "b, then all of c in arrival order; a is the third group"
        );
        assert_eq!(first_groups(&rows, order.clone(), "genre", None), order);
    }

    #[test]
    fn long_values_are_shortened_not_fatal() {
        let long = "x".repeat(70_000);
        let t = markdown(&["genre".into()], &[vec![long], vec!["Rock".into()]]);
        let widest = t.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= MAX_CELL + 4, "{widest}");
        assert!(t.contains(&format!("{}…", "x".repeat(MAX_CELL - 1))), "{t}");
    }

    #[test]
    fn pads_columns_and_formats_numbers() {
        let col = ColumnConfig {
            field: "avg".into(),
            header: None,
            scale: Some(1e-9),
            decimals: Some(3),
        };
        assert_eq!(cell(Some(&Value::Float(1_936_000_000.0)), &col), "1.936");
        assert_eq!(cell(Some(&Value::Float(f64::NAN)), &col), "n/a");
        assert_eq!(cell(Some(&Value::Float(f64::NEG_INFINITY)), &col), "n/a");
        let t = markdown(
            &["Genre".into(), "Avg".into()],
            &[vec!["Jazz/Big Band".into(), "1.936".into()]],
        );
        assert_eq!(
            t,
            "| Genre         | Avg   |\n|---------------|-------|\n| Jazz/Big Band | 1.936 |\n"
        );
    }
}
