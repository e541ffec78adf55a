//! Running operator-mapped commands with a time and output bound.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::node::MappedRun;

/// Runs `run` to completion (blocking), killing it after its timeout; returns its standard
/// output and error, cut to `max_output` bytes, plus a note when it failed or was cut.
pub fn run_blocking(run: &MappedRun) -> String {
    let mut child = match Command::new(&run.program)
        .args(&run.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return format!("Cannot run '{}': {e}", run.program),
    };
    let max = run.max_output;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(max as u64 + 1).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_millis(run.timeout_ms);
    let mut note = String::new();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                // Kill the whole process group so grandchildren release the pipes too.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                note = format!("\n[killed after {} ms]", run.timeout_ms);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                note = format!("\n[wait failed: {e}]");
                break None;
            }
        }
    };
    let mut bytes = out.join().unwrap_or_default();
    bytes.extend(err.join().unwrap_or_default());
    if bytes.len() > max {
        bytes.truncate(max);
        note.push_str(&format!("\n[output cut at {max} bytes]"));
    }
    if let Some(s) = status.filter(|s| !s.success()) {
        note.push_str(&format!("\n[{s}]"));
    }
    let text = String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string();
    if text.is_empty() {
        note.trim_start_matches('\n').to_string()
    } else {
        text + &note
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str, args: &[&str], timeout_ms: u64, max_output: usize) -> String {
        run_blocking(&MappedRun {
            program: program.into(),
            args: args.iter().map(|s| (*s).to_string()).collect(),
            timeout_ms,
            max_output,
        })
    }

    #[test]
    fn bounded_time_and_output() {
        assert_eq!(run("/bin/echo", &["flushed", "0"], 5000, 100), "flushed 0");
        assert_eq!(
            run("/bin/sh", &["-c", "yes | head -c 1000"], 5000, 10),
            "y\ny\ny\ny\ny\n[output cut at 10 bytes]"
        );
        let t = Instant::now();
        assert!(run("/bin/sleep", &["5"], 200, 10).ends_with("[killed after 200 ms]"));
        assert!(t.elapsed() < Duration::from_secs(3));
        let t = Instant::now();
        assert!(run("/bin/sh", &["-c", "sleep 30 & sleep 30"], 200, 10)
            .ends_with("[killed after 200 ms]"));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(run("/nonexistent/x", &[], 100, 10).starts_with("Cannot run"));
        assert!(run("/bin/sh", &["-c", "exit 3"], 1000, 10).contains("exit status: 3"));
    }
}
