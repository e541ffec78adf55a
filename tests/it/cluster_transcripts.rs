//! Transcript tests in the raft-rs datadriven style: each file under
//! `tests/data/transcripts/` is a list of cases
//!
//! ```text
//! directive arg=value …
//! input lines
//! ----
//! expected output
//! ```
//!
//! ended by a blank line; an output that contains blank lines is written between `----`/`----`
//! pairs. Set `REWRITE=1` to regenerate the expected outputs.

use std::path::Path;

use mbus::cluster::manager::ManagerSettings;
use mbus::cluster::sim::Sim;
use mbus::cluster::subcluster::Subclusters;
use mbus::ecconf::Config;

struct Case {
    directive: String,
    input: String,
    expected: String,
    line: usize,
}

enum Piece {
    Text(String),
    Case(Case),
}

fn parse_file(text: &str) -> Vec<Piece> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.starts_with('#') {
            out.push(Piece::Text(l.to_string()));
            i += 1;
            continue;
        }
        let start = i + 1;
        let directive = l.to_string();
        i += 1;
        let mut input = Vec::new();
        while i < lines.len() && lines[i] != "----" {
            input.push(lines[i]);
            i += 1;
        }
        i += 1; // ----
        let mut expected = Vec::new();
        if i < lines.len() && lines[i] == "----" {
            i += 1;
            while i + 1 < lines.len() && !(lines[i] == "----" && lines[i + 1] == "----") {
                expected.push(lines[i]);
                i += 1;
            }
            i += 2;
        } else {
            while i < lines.len() && !lines[i].is_empty() {
                expected.push(lines[i]);
                i += 1;
            }
        }
        out.push(Piece::Case(Case {
            directive,
            input: input.join("\n"),
            expected: expected.join("\n"),
            line: start,
        }));
    }
    out
}

fn arg<'a>(directive: &'a str, key: &str) -> &'a str {
    directive
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("missing {key}= in '{directive}'"))
}

fn opt_arg<'a>(directive: &'a str, key: &str) -> Option<&'a str> {
    directive
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn run_case(sim: &mut Sim, c: &Case) -> String {
    let name = c.directive.split_whitespace().next().unwrap_or("");
    match name {
        "manager" => {
            let settings = ManagerSettings {
                subclusters: Subclusters::from_mbus_conf(&c.input),
                ..ManagerSettings::default()
            };
            let config = match opt_arg(&c.directive, "as_logger") {
                Some(dir) => Config::from_str(
                    "eccluster.conf",
                    &format!("as_logger {{ base_dir = \"{dir}\" }}"),
                    std::path::Path::new("."),
                )
                .expect("as_logger config"),
                None => Config::default(),
            };
            sim.add_manager(arg(&c.directive, "host"), settings, config);
            "ok".into()
        }
        "node" => match sim.add_node(
            arg(&c.directive, "name"),
            arg(&c.directive, "subcluster"),
            &c.input,
        ) {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        },
        "reload" => match sim.reload_no_run(arg(&c.directive, "name"), &c.input) {
            Ok(()) => {
                sim.run();
                "ok".into()
            }
            Err(e) => e.to_string(),
        },
        "gauge" => {
            let node = arg(&c.directive, "name");
            let value = arg(&c.directive, "value").parse().expect("value");
            let mut ok = false;
            sim.with_node(node, |core| {
                ok = core.set_gauge(arg(&c.directive, "object"), arg(&c.directive, "key"), value);
            });
            if ok { "ok" } else { "refused" }.into()
        }
        // The same command on every node's local console, answers side by side: replicated
        // objects must read the same everywhere.
        "every-node" => {
            let names: Vec<String> = sim.nodes.keys().cloned().collect();
            let mut out = Vec::new();
            for n in names {
                for line in c.input.lines() {
                    out.push(format!("{n}> {line}"));
                    out.push(sim.node_console(&n, line));
                }
            }
            out.join("\n")
        }
        // Lines appended to a node's log (as its shell's tail reads them).
        "log" => {
            let node = arg(&c.directive, "name");
            let lines: Vec<String> = c.input.lines().map(str::to_string).collect();
            sim.with_node(node, |core| core.log_lines(arg(&c.directive, "log"), lines));
            "ok".into()
        }
        "log-files" => sim
            .log_files
            .iter()
            .map(|(p, t)| format!("{p}:\n{}", t.trim_end()))
            .collect::<Vec<_>>()
            .join("\n"),
        "kill" => {
            sim.kill(arg(&c.directive, "name"));
            "ok".into()
        }
        "tick" => {
            sim.tick(arg(&c.directive, "secs").parse().expect("secs"));
            "ok".into()
        }
        "run" => {
            sim.run();
            "ok".into()
        }
        "console" | "node-console" | "console-async" => {
            let mut out = Vec::new();
            for line in c.input.lines() {
                let session = opt_arg(&c.directive, "session").unwrap_or("local");
                let reply = if name == "console" {
                    sim.console_as(session, line)
                } else if name == "console-async" {
                    sim.console_no_run(line)
                } else {
                    sim.node_console(arg(&c.directive, "name"), line)
                };
                out.push(format!("> {line}"));
                if !reply.is_empty() {
                    out.push(reply);
                }
            }
            out.join("\n")
        }
        "plumbed" => sim
            .nodes
            .iter()
            .map(|(n, s)| {
                format!(
                    "{n}: {}",
                    s.core
                        .plumbed()
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                )
                .trim_end()
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("unknown directive '{other}'"),
    }
}

fn render(c: &Case, actual: &str) -> String {
    let mut s = format!("{}\n", c.directive);
    if !c.input.is_empty() {
        s.push_str(&c.input);
        s.push('\n');
    }
    s.push_str("----\n");
    if actual.lines().any(|l| l.trim().is_empty()) {
        s.push_str(&format!("----\n{actual}\n----\n----\n"));
    } else {
        s.push_str(actual);
        s.push('\n');
    }
    s
}

fn run_file(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read transcript");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut sim = Sim::new();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for piece in parse_file(&text) {
        match piece {
            Piece::Text(t) => {
                rewritten.push_str(&t);
                rewritten.push('\n');
            }
            Piece::Case(c) => {
                let actual = run_case(&mut sim, &c);
                if actual != c.expected {
                    failures.push(format!(
                        "{}:{}: {}\n--- expected\n{}\n--- actual\n{}",
                        path.display(),
                        c.line,
                        c.directive,
                        c.expected,
                        actual
                    ));
                }
                rewritten.push_str(&render(&c, &actual));
            }
        }
    }
    if rewrite {
        std::fs::write(path, rewritten).expect("rewrite transcript");
    } else {
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

#[test]
fn cluster_transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("transcripts dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        if f.extension().is_some_and(|e| e == "txt") {
            run_file(&f);
        }
    }
}
