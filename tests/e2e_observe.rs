//! Watching a run end to end: the metrics endpoint scraped while the real binary runs, the stats
//! line, `--quiet`, and `--metrics-addr` errors.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A generated capture of `records` records with a bad line every 997, replayed at `speed` (the
/// generator spaces records about 1 s apart, so 20,000 records at 5000× take about 4 s): long enough to
/// be watched while it runs, small enough to write quickly.
fn paced_pipeline(dir: &Path, records: usize, speed: u32) -> PathBuf {
    let generated = dir.join("generated.jsonl");
    generate(&generated, Some(records), 3);
    let mut text = String::new();
    for (i, line) in std::fs::read_to_string(&generated)
        .unwrap()
        .lines()
        .enumerate()
    {
        if i % 997 == 500 {
            text.push_str("this is not json at all\n");
        }
        text.push_str(line);
        text.push('\n');
    }
    let capture = dir.join("capture.jsonl");
    std::fs::write(&capture, text).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        tumbling_pipeline(&format!(
            "type = \"replay\"\npath = {:?}\nspeed = {speed}",
            capture.display().to_string()
        )),
    )
    .unwrap();
    file
}

/// `GET /metrics`: the samples, keyed by name and sorted labels like `records_in_total{stage=events}`
/// (the `tributary_` prefix dropped).
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = key.split_once('{').unwrap_or((key, "}"));
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| p.replace('"', ""))
                .collect();
            labels.sort();
            let name = name.strip_prefix("tributary_").unwrap_or(name);
            (
                format!("{name}{{{}}}", labels.join(",")),
                value.parse::<f64>().unwrap(),
            )
        })
        .collect()
}

/// The run summary's lines: stage → (in, out, dead-lettered, late).
fn summary(stderr: &str) -> BTreeMap<String, [u64; 4]> {
    stderr
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" dead-lettered ") && l.contains(" in "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |w: &str| -> u64 {
                let i = words.iter().position(|x| *x == w).unwrap();
                words[i + 1].parse().unwrap()
            };
            (
                words[0].to_string(),
                [
                    after("in"),
                    after("out"),
                    after("dead-lettered"),
                    after("late"),
                ],
            )
        })
        .collect()
}

/// Reads a child's stderr line by line on a thread, so the test can wait for a line while the run goes on.
fn lines_of(stderr: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn metrics_scraped_during_a_run_agree_with_its_summary() {
    let dir = scratch("e2e_metrics");
    let file = paced_pipeline(&dir, 20_000, 5000);
    let mut child = tributary()
        .current_dir(&dir)
        .arg("run")
        .arg(&file)
        .args([
            "--quiet",
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-linger",
            "60s",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stderr.take().unwrap());
    let mut stderr = String::new();
    let next_line = |stderr: &mut String, wait: Duration| {
        let line = lines.recv_timeout(wait).ok()?;
        stderr.push_str(&line);
        stderr.push('\n');
        Some(line)
    };

    let addr = loop {
        let line = next_line(&mut stderr, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no metrics address printed:\n{stderr}"));
        if let Some(rest) = line.strip_prefix("tributary: metrics at http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    // Scrape while the run goes on, until it says it serves the final metrics.
    let mut during = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = scrape(&addr);
        during.push(m["records_in_total{stage=events}"]);
        match next_line(&mut stderr, Duration::from_millis(100)) {
            Some(l) if l.starts_with("tributary: serving the final metrics") => break,
            _ => assert!(Instant::now() < deadline, "the run did not end:\n{stderr}"),
        }
    }
    let last = scrape(&addr);

    let counts = summary(&stderr);
    assert_eq!(counts.len(), 4, "{stderr}");
    let total_read = counts["events"][0] as f64;
    assert_eq!(total_read, 20_020.0);
    assert!(
        during.iter().any(|&n| n > 0.0 && n < total_read),
        "no scrape saw the run half way: {during:?}"
    );
    assert!(during.windows(2).all(|w| w[0] <= w[1]), "{during:?}");
    for (stage, [records_in, records_out, dead, late]) in &counts {
        let get = |name: &str| last[&format!("{name}{{stage={stage}}}")];
        assert_eq!(get("records_in_total"), *records_in as f64, "{stage}");
        assert_eq!(get("records_out_total"), *records_out as f64, "{stage}");
        assert_eq!(get("late_total"), *late as f64, "{stage}");
        // Dead letters by reason add up to the stage's dead-lettered and late records.
        let prefix = "dead_letter_total{reason=";
        let by_reason: f64 = last
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(&format!(",stage={stage}}}")))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(by_reason, (*dead + *late) as f64, "{stage}: {last:?}");
    }
    assert_eq!(counts["events"][2], 20, "{stderr}");
    assert_eq!(
        last["dead_letter_total{reason=invalid capture line,stage=events}"],
        20.0
    );
    // The other gauges and the histogram are there, and say what the run did.
    assert_eq!(
        last["source_read_bytes_total{stage=events}"],
        last["source_size_bytes{stage=events}"]
    );
    let watermark = last["window_watermark_seconds{stage=avg_by_genre_1m}"];
    assert!(watermark > 1_717_243_200.0, "{watermark}");
    assert!(last["window_watermark_lag_seconds{stage=avg_by_genre_1m}"] > 0.0);
    assert!(last["plugin_batch_seconds_count{stage=scaled}"] >= 1.0);
    assert_eq!(
        last["plugin_batch_seconds_bucket{le=+Inf,stage=avg_by_genre_1m}"],
        last["plugin_batch_seconds_count{stage=avg_by_genre_1m}"]
    );

    // A SIGTERM ends the lingering at once, and the run still succeeded.
    // SAFETY: signals our own child, which has not been waited for, so its pid is still its own.
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0);
    let waited = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(waited.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_bad_metrics_addr_is_an_error_naming_the_flag() {
    let dir = scratch("e2e_metrics_addr");
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        tumbling_pipeline(&format!(
            "type = \"replay\"\npath = {:?}",
            fixture("music_streaming_events.jsonl")
                .display()
                .to_string()
        )),
    )
    .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for addr in [taken.as_str(), "nonsense"] {
        let mut cmd = tributary();
        cmd.current_dir(&dir)
            .arg("run")
            .arg(&file)
            .args(["--metrics-addr", addr]);
        let (code, _, stderr) = run(cmd);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: cannot serve the metrics of `--metrics-addr {addr}`"
            )) && stderr.contains("give a free `host:port`"),
            "{stderr}"
        );
        // Nothing ran: not even the dead-letter file was created.
        assert!(!dir.join("out").exists(), "{stderr}");
    }
}

#[test]
fn without_a_terminal_a_stats_line_shows_progress_and_quiet_hides_it() {
    let dir = scratch("e2e_stats_line");
    let file = paced_pipeline(&dir, 5_000, 5000);
    let mut cmd = tributary();
    cmd.current_dir(&dir)
        .arg("run")
        .arg(&file)
        .args(["--stats-interval", "200ms"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    let stats: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tributary: ") && l.contains(": events read "))
        .collect();
    assert!(stats.len() >= 2, "{stderr}");
    // Every stage is on the line, and the replay's share of its file grows.
    for part in [
        "/s, ",
        "%",
        " | scaled ",
        " | avg_by_genre_1m ",
        " | per_minute ",
        " | dead-lettered 5, late 0",
    ] {
        assert!(stats.last().unwrap().contains(part), "`{part}`: {stderr}");
    }
    let read: Vec<u64> = stats
        .iter()
        .map(|l| {
            let after = &l[l.find("events read ").unwrap() + 12..];
            after.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(read.windows(2).all(|w| w[0] <= w[1]), "{read:?}");
    assert!(read[0] < 5_005, "{stderr}");
    assert!(stderr.contains("tributary: finished in"), "{stderr}");

    let mut cmd = tributary();
    cmd.current_dir(&dir)
        .arg("run")
        .arg(&file)
        .args(["--stats-interval", "200ms", "--quiet"]);
    let (code, _, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("events read"), "{stderr}");
    assert!(
        stderr.contains("tributary: finished in") && stderr.contains("  events (replay)"),
        "the summary stays: {stderr}"
    );
}

/// `validate --explain` on the repository's pipeline: every stage with its type, its edges both ways,
/// its plugin, and the fields its plugin reads and writes.
#[test]
fn validate_explains_the_default_pipeline_as_a_dag() {
    let mut cmd = tributary();
    cmd.current_dir(repo())
        .args(["validate", "--explain", "pipeline.toml"]);
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("pipeline.toml: ok"), "{stderr}");
    // Blocks: a `name (type)` line, then indented `key: value` lines.
    let mut stages: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    let mut current = String::new();
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        if let Some(detail) = line.strip_prefix("  ") {
            let (key, value) = detail.split_once(':').unwrap();
            let entry = &mut stages.get_mut(&current).unwrap().1;
            entry.insert(key.to_string(), value.trim().to_string());
        } else {
            let (name, ty) = line.split_once(" (").unwrap();
            current = name.to_string();
            stages.insert(
                current.clone(),
                (ty.trim_end_matches(')').to_string(), BTreeMap::new()),
            );
        }
    }
    let list = |stage: &str, key: &str| -> Vec<String> {
        stages[stage].1[key]
            .split(", ")
            .filter(|s| *s != "-")
            .map(String::from)
            .collect()
    };
    // Every stage of the file, in its order, with its type.
    let toml: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("pipeline.toml")).unwrap()).unwrap();
    let declared = toml["stages"].as_table().unwrap();
    assert_eq!(stages.len(), declared.len(), "{stdout}");
    for (name, table) in declared {
        let (ty, _) = &stages[name];
        assert_eq!(ty, table["type"].as_str().unwrap(), "{name}");
        // Inputs as declared, and each input lists this stage among its outputs.
        let inputs: Vec<String> = table
            .get("inputs")
            .map(|i| {
                i.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(list(name, "inputs"), inputs, "{name}");
        for input in &inputs {
            assert!(list(input, "outputs").contains(name), "{input} -> {name}");
        }
    }
    assert_eq!(list("events", "inputs"), Vec::<String>::new());
    assert!(list("events", "outputs").contains(&"scaled".to_string()));

    // Plugins and their declared fields.
    let scaled = &stages["scaled"].1;
    assert_eq!(scaled["plugin"], "scale (bundled)");
    assert_eq!(scaled["reads"], "streams (float)");
    assert_eq!(scaled["writes"], "streams (float)");
    let window = &stages["avg_by_genre_1m"].1;
    assert_eq!(window["plugin"], "average (bundled)");
    assert_eq!(window["reads"], "genre (key), streams (float)");
    assert!(
        window["writes"].starts_with("window_start, window_end, genre (key), avg (float)"),
        "{}",
        window["writes"]
    );
    // Sinks: what a chart draws, or every field.
    assert!(!stages["per_minute"].1.contains_key("plugin"));
    assert_eq!(stages["top20_chart"].1["reads"], "genre, avg");
    assert_eq!(
        stages["per_minute"].1["reads"],
        "every field of its input records"
    );
}
