//! `ec_console`: the console client of `eccmgr` and node agents.
//!
//! ```text
//! ec_console [remoteaddr [command …]]
//! ```
//! `remoteaddr` is a socket path (default `/tmp/2025`), a bare port number (`/tmp/<n>`),
//! `host:port` or `[ipv6]:port`. With command words, or with standard input not a terminal,
//! runs in batch mode: prints each reply and exits (status 1 if the connection fails, 2 if a
//! command was refused). Otherwise interactive: banner from `version`, prompt
//! `HH:MM:SS <endpoint>> `, line editing and history, `quit` / `exit` / end of file to leave.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use clap::Parser as _;
use mbus::cli::ec_console::Args;
use mbus::console::client::{ConsoleClient, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Command phrases offered by tab completion (manager and node commands).
const PHRASES: &[&str] = &[
    "broadcast ",
    "subcluster broadcast ",
    "subcluster retrieve ",
    "flush control cache",
    "help",
    "info",
    "retrieve ",
    "retrieve_node ",
    "show cluster membership",
    "xml show cluster membership",
    "shutdown",
    "unicast ",
    "version",
    "config get ",
    "config set ",
    "config eval ",
    "config unset ",
    "config show ",
    "config showrecurse",
    "config locate ",
    "config reload",
    "cluster membership",
    "cluster info",
    "cluster nodename",
    "cluster nodeaddr",
    "cluster duravip show",
    "cluster duravip show tables",
    "cluster duravip move ",
    "cluster duravip announce view",
    "quit",
];

/// Tab completion of command phrases, also after `broadcast ` / `unicast NODE `.
struct Complete;

impl rustyline::completion::Completer for Complete {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        // Complete the node command after a relaying prefix.
        let start = [
            "broadcast ",
            "subcluster broadcast ",
            "subcluster retrieve ",
            "retrieve ",
        ]
        .iter()
        .filter(|p| head.starts_with(**p))
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
        let tail = &head[start..];
        Ok((
            start,
            PHRASES
                .iter()
                .filter(|p| p.starts_with(tail))
                .map(|p| (*p).to_string())
                .collect(),
        ))
    }
}

impl rustyline::hint::Hinter for Complete {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Complete {}
impl rustyline::validate::Validator for Complete {}
impl rustyline::Helper for Complete {}

fn is_error(reply: &str) -> bool {
    reply.starts_with("Unknown command")
        || reply.starts_with("usage:")
        || reply.starts_with("Command line too long")
}

fn main() {
    let args = Args::parse();
    if args.man {
        print!("{}", mbus::console::client::MANUAL);
        return;
    }
    let endpoint = match Endpoint::parse(&args.remoteaddr) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ec_console: {e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ec_console: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        let mut client = match ConsoleClient::connect(&endpoint, CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ec_console: cannot connect to {endpoint}: {e}");
                return 1;
            }
        };
        if !args.command.is_empty() {
            return batch(&mut client, std::iter::once(args.command.join(" "))).await;
        }
        if !std::io::stdin().is_terminal() {
            let lines: Vec<String> = std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .collect();
            return batch(&mut client, lines.into_iter()).await;
        }
        interactive(&mut client, &endpoint).await
    });
    std::process::exit(code);
}

async fn batch(client: &mut ConsoleClient, lines: impl Iterator<Item = String>) -> i32 {
    let mut code = 0;
    let mut out = std::io::stdout().lock();
    for line in lines {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if l == "quit" || l == "exit" {
            break;
        }
        match client.command(l).await {
            Ok(reply) => {
                if is_error(&reply) {
                    code = 2;
                }
                if !reply.is_empty() {
                    let _ = writeln!(out, "{reply}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let _ = writeln!(out, "Command line too long ({} bytes)", l.len());
                code = 2;
            }
            // issue 16: a refused login is not a lost connection.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("ec_console: {e}");
                return 1;
            }
            Err(e) => {
                eprintln!("ec_console: connection lost: {e}");
                return 1;
            }
        }
    }
    code
}

async fn interactive(client: &mut ConsoleClient, endpoint: &Endpoint) -> i32 {
    match client.command("version").await {
        Ok(b) => println!("{b}"),
        Err(e) => {
            eprintln!("ec_console: {e}");
            return 1;
        }
    }
    let mut editor = match rustyline::Editor::<Complete, rustyline::history::DefaultHistory>::new()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ec_console: cannot start line editing: {e}");
            return 1;
        }
    };
    editor.set_helper(Some(Complete));
    let history = history_file();
    if let Some(text) = history
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
    {
        for line in text
            .lines()
            .rev()
            .take(HISTORY_MAX)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let _ = editor.add_history_entry(line);
        }
    }
    let mut session: Vec<String> = Vec::new();
    let code = read_loop(client, endpoint, &mut editor, &mut session).await;
    if let Some(p) = history {
        save_history(&p, &session);
    }
    code
}

/// Most history lines kept in `~/.ec_console_history`.
const HISTORY_MAX: usize = 1000;

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".ec_console_history"))
}

fn save_history(path: &std::path::Path, session: &[String]) {
    if session.is_empty() {
        return;
    }
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    lines.extend(session.iter().cloned());
    let start = lines.len().saturating_sub(HISTORY_MAX);
    let _ = std::fs::write(path, lines[start..].join("\n") + "\n");
}

async fn read_loop(
    client: &mut ConsoleClient,
    endpoint: &Endpoint,
    editor: &mut rustyline::Editor<Complete, rustyline::history::DefaultHistory>,
    session: &mut Vec<String>,
) -> i32 {
    let mut pager = false;
    loop {
        let prompt = format!("{} {endpoint}> ", chrono::Local::now().format("%H:%M:%S"));
        let line = match editor.readline(&prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => return 0,
        };
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(l);
        session.push(l.to_string());
        if l == "quit" || l == "exit" {
            return 0;
        }
        if l == "\\pager" {
            pager = !pager;
            println!("Pager {}.", if pager { "on" } else { "off" });
            continue;
        }
        let mut result = client.command(l).await;
        if matches!(&result, Err(e) if e.kind() != std::io::ErrorKind::InvalidInput
            && e.kind() != std::io::ErrorKind::PermissionDenied)
        {
            // The server closes idle sessions (Control_Listener Timeout): reconnect once.
            match ConsoleClient::connect(endpoint, CONNECT_TIMEOUT).await {
                Ok(c) => {
                    *client = c;
                    result = client.command(l).await;
                }
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(reply) if reply.is_empty() => {}
            Ok(reply) if pager => page(&reply),
            Ok(reply) => println!("{reply}"),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                println!("Command line too long ({} bytes)", l.len());
            }
            // issue 16: a refused login is not a lost connection.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("ec_console: {e}");
                return 1;
            }
            Err(e) => {
                eprintln!("ec_console: connection lost: {e}");
                return 1;
            }
        }
    }
}

/// Shows `text` through `$PAGER` (default `less`); prints it directly if that fails.
fn page(text: &str) {
    let pager = std::env::var("PAGER").unwrap_or_else(|_| "less".into());
    let child = std::process::Command::new("sh")
        .args(["-c", &pager])
        .stdin(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut c) => {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = writeln!(stdin, "{text}");
            }
            let _ = c.wait();
        }
        Err(_) => println!("{text}"),
    }
}
