//! The binaries as a user meets them: `--help`, `--version`, bad flags, man pages and
//! completions generated from the same clap definitions, Momentum's short flags, and one-line
//! errors (no `Debug` output, no backtrace) with a non-zero exit.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output};

use clap::Parser as _;
use mbus::cli;

/// Every binary with the flags its `--help` must explain.
const BINARIES: &[(&str, &[&str])] = &[
    (
        env!("CARGO_BIN_EXE_spread"),
        &[
            "-l",
            "-n",
            "-c",
            "RUST_LOG",
            "spread.conf",
            "--metrics ADDR:PORT",
            "SIGUSR1",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_eccmgr"),
        &[
            "-c, --config",
            "-g, --group",
            "-s, --daemon",
            "-m, --mbus-conf",
            "-n, --no-lock",
            "-v, --verbose",
            "-e, --ext-dir",
            "-D",
            "-d",
            "-x",
            "-V, --version",
            "RUST_LOG",
            "ECCMGR_CONFIG",
            "[default: ec_cluster]",
            "eccluster.conf",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-node"),
        &[
            "-c, --config",
            "-s, --daemon",
            "-n, --node",
            "-S, --subcluster",
            "-m, --mbus-conf",
            "-l, --listen",
            "--plumb",
            "-v, --verbose",
            "RUST_LOG",
            "EC_NODE_NAME",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-bench"),
        &[
            "-s, --daemon",
            "-m, --messages",
            "-b, --size",
            "-w, --window",
            "--service",
            "-r, --receivers",
            "-g, --group",
            "--timeout",
            "[default: 100000]",
            "[env: MBUS_BENCH_DAEMON=]",
            "RUST_LOG",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_ec_console"),
        &[
            "[REMOTEADDR]",
            "[COMMAND]...",
            "/tmp/2025",
            "--man",
            "-V, --version",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-passwd"),
        &["<USER>", "-f, --file", "-r, --roles", "--stdin", "Argon2id"],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-status"),
        &[
            "-c, --config",
            "-n, --name",
            "--json",
            "-w, --watch",
            "--count",
            "-t, --timeout",
            "no reply",
            "Exit status",
        ],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-gen-docs"),
        &["[OUTDIR]", "target/gen-docs"],
    ),
    (
        env!("CARGO_BIN_EXE_mbus-fuzz-net"),
        &[
            "client",
            "peer",
            "replay",
            "--spawn",
            "-s 4803@127.0.0.1",
            "RUST_LOG",
        ],
    ),
];

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn name(bin: &str) -> &str {
    bin.rsplit('/').next().unwrap_or(bin)
}

#[test]
fn every_binary_help_explains_its_flags_and_exits_0() {
    for (bin, wanted) in BINARIES {
        let o = run(bin, &["--help"]);
        assert!(o.status.success(), "{bin}: {o:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        for w in *wanted {
            assert!(text.contains(w), "{bin} --help lacks {w:?}:\n{text}");
        }
    }
}

#[test]
fn every_binary_prints_its_version() {
    for (bin, _) in BINARIES {
        let o = run(bin, &["--version"]);
        assert!(o.status.success(), "{bin}: {o:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{bin}: {text}");
    }
}

#[test]
fn bad_flags_are_named_with_a_suggestion_and_exit_2() {
    for (bin, bad, suggestion) in [
        (env!("CARGO_BIN_EXE_eccmgr"), "--confg", "--config"),
        (env!("CARGO_BIN_EXE_mbus-node"), "--plum", "--plumb"),
        (env!("CARGO_BIN_EXE_mbus-bench"), "--sevice", "--service"),
        (env!("CARGO_BIN_EXE_ec_console"), "--mann", "--man"),
    ] {
        let o = run(bin, &[bad]);
        assert_eq!(o.status.code(), Some(2), "{bin} {bad}");
        let err = stderr(&o);
        assert!(err.contains(&format!("'{bad}'")), "{err}");
        assert!(err.contains(&format!("'{suggestion}'")), "{err}");
    }
    let o = run(env!("CARGO_BIN_EXE_mbus-bench"), &["--service", "sfe"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'safe'"), "{}", stderr(&o));
}

#[test]
fn ec_console_man_prints_the_manual_and_exits_0() {
    let o = run(env!("CARGO_BIN_EXE_ec_console"), &["--man"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("EC_CONSOLE(1)"), "{out}");
    assert!(
        out.contains("user@host:port") || out.contains("USER@HOST"),
        "{out}"
    );
}

#[test]
fn man_pages_build_in_process_and_name_every_flag() {
    let cmds = cli::commands();
    let names: Vec<&str> = cmds.iter().map(clap::Command::get_name).collect();
    assert_eq!(
        names,
        [
            "spread",
            "eccmgr",
            "mbus-node",
            "mbus-bench",
            "mbus-fuzz-net",
            "ec_console",
            "mbus-passwd",
            "mbus-status",
            "mbus-gen-docs"
        ]
    );
    for cmd in &cmds {
        let page = String::from_utf8(cli::man_page(cmd).unwrap()).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains(&format!(".TH {}", cmd.get_name())), "{page}");
        for arg in cmd.get_arguments() {
            if let Some(s) = arg.get_short() {
                assert!(
                    page.contains(&format!("\\-{s}")),
                    "{}: -{s}",
                    cmd.get_name()
                );
            }
            if let Some(l) = arg.get_long() {
                let roff = l.replace('-', "\\-");
                assert!(
                    page.contains(&format!("\\-\\-{roff}")),
                    "{}: --{l}",
                    cmd.get_name()
                );
            }
        }
    }
}

#[test]
fn gen_docs_writes_man_pages_and_completions_for_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        env!("CARGO_BIN_EXE_mbus-gen-docs"),
        &[dir.path().to_str().unwrap()],
    );
    assert!(o.status.success(), "{o:?}");
    for (bin, _) in BINARIES {
        let n = name(bin);
        for f in [
            format!("man/{n}.1"),
            format!("completions/bash/{n}.bash"),
            format!("completions/zsh/_{n}"),
            format!("completions/fish/{n}.fish"),
        ] {
            let len = std::fs::metadata(dir.path().join(&f)).map_or(0, |m| m.len());
            assert!(len > 0, "{f} missing or empty");
        }
    }
    let bash = std::fs::read_to_string(dir.path().join("completions/bash/eccmgr.bash")).unwrap();
    assert!(bash.contains("--mbus-conf"), "{bash}");
}

fn p_metrics(a: &[&str]) -> Result<cli::spread::Args, cli::spread::ArgsError> {
    cli::spread::parse_args(a.iter().map(|s| (*s).to_owned()))
}

#[test]
fn spread_man_page_definition_agrees_with_the_hand_parser() {
    let cmd = cli::spread::command();
    let mut shorts: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_num_args().is_none_or(|n| n.takes_values()))
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_short().map(|s| format!("-{s}")))
        .collect();
    shorts.sort();
    let mut flags = cli::spread::FLAGS.map(str::to_owned).to_vec();
    flags.sort();
    assert_eq!(shorts, flags);
    for f in &flags {
        let parsed = cli::spread::parse_args([f.clone(), "y".into()].into_iter());
        assert!(parsed.is_ok(), "{f}: {parsed:?}");
    }
    let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
    assert_eq!(longs, ["metrics", "link-key", "help", "version"]);
    let m = p_metrics(&["--metrics", "127.0.0.1:9803", "-n", "x"]);
    assert_eq!(
        m.map(|a| a.metrics),
        Ok(Some("127.0.0.1:9803".parse().expect("addr")))
    );
    let m = p_metrics(&["--metrics=[::1]:9803"]);
    assert_eq!(
        m.map(|a| a.metrics),
        Ok(Some("[::1]:9803".parse().expect("addr")))
    );
    assert!(matches!(
        p_metrics(&["--metrics", "nowhere"]),
        Err(cli::spread::ArgsError::Message(_))
    ));
    assert_eq!(
        p_metrics(&["--metrics"]),
        Err(cli::spread::ArgsError::Usage)
    );
    assert_eq!(
        p_metrics(&["--metricsx"]),
        Err(cli::spread::ArgsError::Usage)
    );
    let p = |a: &[&str]| cli::spread::parse_args(a.iter().map(|s| (*s).to_owned()));
    assert_eq!(
        p(&["--link-key", "k", "-n", "a"]).map(|a| a.link_key),
        Ok(Some("k".into()))
    );
    assert_eq!(
        p(&["--link-key=k2"]).map(|a| a.link_key),
        Ok(Some("k2".into()))
    );
    assert_eq!(p(&["--link-key"]), Err(cli::spread::ArgsError::Usage));
    assert!(cli::spread::USAGE.ends_with("specify configuration file\n"));
    assert_eq!(p(&["--help"]), Err(cli::spread::ArgsError::Help));
    assert_eq!(p(&["--version"]), Err(cli::spread::ArgsError::Version));
    assert_eq!(p(&["-x", "1"]), Err(cli::spread::ArgsError::Usage));
    assert_eq!(p(&["-V"]), Err(cli::spread::ArgsError::Usage));
}

#[test]
fn momentum_short_flags_keep_their_meaning() {
    let a = cli::eccmgr::Args::try_parse_from([
        "eccmgr", "-c", "e.conf", "-g", "grp", "-s", "4803@h", "-m", "m.conf", "-n", "-vv", "-v",
        "-e", "ext", "-D", "-d", "-x",
    ])
    .unwrap();
    assert_eq!(a.config.as_deref(), Some(std::path::Path::new("e.conf")));
    assert_eq!(a.group, "grp");
    assert_eq!(a.daemon.as_deref(), Some("4803@h"));
    assert_eq!(a.verbose, 3);
    assert!(a.no_lock && a.foreground && a.debug_foreground && a.log_bus_errors && !a.version);
    assert_eq!(a.log_level(), "trace");
    let v = cli::eccmgr::Args::try_parse_from(["eccmgr", "-V"]).unwrap();
    assert!(v.version);
    let quiet = cli::eccmgr::Args::try_parse_from(["eccmgr", "-x"]).unwrap();
    assert_eq!(quiet.log_level(), "info");

    // ec_console [remoteaddr [command …]]: command words pass through unchanged.
    let c = cli::ec_console::Args::try_parse_from([
        "ec_console",
        "10.0.0.1:2025",
        "config",
        "get",
        "-x",
        "--y",
        "a b",
    ])
    .unwrap();
    assert_eq!(c.remoteaddr, "10.0.0.1:2025");
    assert_eq!(c.command, ["config", "get", "-x", "--y", "a b"]);
    let d = cli::ec_console::Args::try_parse_from(["ec_console"]).unwrap();
    assert_eq!((d.remoteaddr.as_str(), d.command.len()), ("/tmp/2025", 0));

    let n = cli::mbus_node::Args::try_parse_from([
        "mbus-node",
        "-n",
        "n1",
        "-S",
        "east",
        "-l",
        "/tmp/a",
        "-l",
        "127.0.0.1:2025",
        "--plumb",
    ])
    .unwrap();
    assert_eq!(n.listen, ["/tmp/a", "127.0.0.1:2025"]);
    assert!(n.plumb);
    assert_eq!(n.log_level(), "warn");

    let b =
        cli::mbus_bench::Args::try_parse_from(["mbus-bench", "-s", "1@h,2@h", "-s", "3"]).unwrap();
    assert_eq!(b.daemons, ["1@h", "2@h", "3"]);
    assert_eq!((b.messages, b.size, b.window), (100_000, 1000, 200));
}

/// Asserts a one-line error that starts with `prog: ` and no backtrace, exit status 1.
fn assert_one_line_error(o: &Output, prog: &str, wanted: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{prog}: {err}");
    assert_eq!(err.lines().count(), 1, "{prog}: {err}");
    assert!(err.starts_with(&format!("{prog}: ")), "{err}");
    assert!(err.contains(wanted), "{prog}: wanted {wanted:?} in {err}");
    assert!(
        !err.contains("backtrace") && !err.contains("Error {"),
        "{err}"
    );
}

#[test]
fn missing_files_are_one_line_errors() {
    let missing = "/nonexistent/mbus-it.conf";
    for bin in [
        env!("CARGO_BIN_EXE_eccmgr"),
        env!("CARGO_BIN_EXE_mbus-node"),
    ] {
        let o = run(bin, &["-c", missing]);
        assert_one_line_error(&o, name(bin), "No such file or directory");
        let o = run(bin, &["-m", missing, "-s", "memory:a=n1"]);
        assert_one_line_error(&o, name(bin), missing);
    }
}

#[test]
fn bad_config_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "Control_Listener {\n").unwrap();
    for bin in [
        env!("CARGO_BIN_EXE_eccmgr"),
        env!("CARGO_BIN_EXE_mbus-node"),
    ] {
        let o = run(bin, &["-c", conf.to_str().unwrap()]);
        assert_one_line_error(&o, name(bin), "bad.conf");
    }
}

#[test]
fn busy_control_port_is_a_one_line_error() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("eccluster.conf");
    std::fs::write(
        &conf,
        format!("Control_Listener {{ Listen \"{addr}\" {{ }} }}\n"),
    )
    .unwrap();
    let o = run(
        env!("CARGO_BIN_EXE_eccmgr"),
        &["-c", conf.to_str().unwrap(), "-s", "memory:a=n1"],
    );
    assert_one_line_error(&o, "eccmgr", &addr);
    let o = run(
        env!("CARGO_BIN_EXE_mbus-node"),
        &["-l", &addr, "-s", "1@127.0.0.1"],
    );
    assert_one_line_error(&o, "mbus-node", &addr);
}

#[test]
fn refused_connections_are_one_line_errors() {
    // A port nobody listens on: bind, note, close.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(
        env!("CARGO_BIN_EXE_ec_console"),
        &[&format!("127.0.0.1:{port}"), "version"],
    );
    assert_one_line_error(&o, "ec_console", "refused");
    let o = run(
        env!("CARGO_BIN_EXE_mbus-bench"),
        &["-s", &format!("{port}@127.0.0.1"), "-m", "10"],
    );
    assert_one_line_error(&o, "mbus-bench", "refused");
    let o = run(
        env!("CARGO_BIN_EXE_mbus-bench"),
        &["-s", "nonsense", "-m", "1"],
    );
    assert_one_line_error(&o, "mbus-bench", "illegal daemon address");
}
