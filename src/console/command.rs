//! Pure parsers for console lines: the manager's commands (fact sheet §2) and the node-side
//! commands a node agent answers (§3). Every error is one line of text.

use std::fmt;

/// Longest accepted command line in bytes; longer lines get a one-line error.
pub const MAX_LINE: usize = 8192;

/// A parse error, printed as the one-line reply to the console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line is longer than [`MAX_LINE`].
    #[error("Command line too long ({0} bytes, limit {MAX_LINE})")]
    TooLong(usize),
    /// The first words name no command.
    #[error("Unknown command '{0}'. Type 'help' for a list of commands.")]
    Unknown(String),
    /// The command exists but its arguments are wrong; carries the usage text.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// A manager (`eccmgr`) console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerCommand {
    /// Blank line: no output.
    Empty,
    /// `broadcast CMD`.
    Broadcast(String),
    /// `subcluster broadcast S CMD`.
    SubclusterBroadcast {
        /// Subcluster name.
        subcluster: String,
        /// Node command, verbatim.
        command: String,
    },
    /// `subcluster retrieve S CMD`.
    SubclusterRetrieve {
        /// Subcluster name.
        subcluster: String,
        /// Node command, verbatim.
        command: String,
    },
    /// `flush control cache`.
    FlushControlCache,
    /// `help [command]`.
    Help(Option<String>),
    /// `info`.
    Info,
    /// `retrieve CMD`.
    Retrieve(String),
    /// `retrieve_node NODE CMD`.
    RetrieveNode {
        /// Node name.
        node: String,
        /// Node command, verbatim.
        command: String,
    },
    /// `show cluster membership`.
    ShowClusterMembership,
    /// `show logs`: aggregated logs (as_logger), sizes and positions.
    ShowLogs,
    /// `shutdown`.
    Shutdown,
    /// `unicast NODE CMD`.
    Unicast {
        /// Node name.
        node: String,
        /// Node command, verbatim.
        command: String,
    },
    /// `version`.
    Version,
    /// `config SUB ARGS`.
    Config(ConfigCommand),
}

/// `config SUB ARGS` — the sub-command and its raw argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigCommand {
    /// `get`, `set`, `eval`, `unset`, `show`, `showrecurse`, `locate`, `reload`, or a
    /// transaction command: `begin`, `commit`, `rollback`, `replay`.
    pub sub: String,
    /// Everything after the sub-command, verbatim.
    pub args: String,
}

/// A parsed line: the optional `xml` prefix and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<C> {
    /// The line started with `xml`.
    pub xml: bool,
    /// The command.
    pub command: C,
}

/// Node-side commands the node agent answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCommand {
    /// Blank line.
    Empty,
    /// `version`.
    Version,
    /// `help [command]`.
    Help(Option<String>),
    /// `config SUB ARGS`.
    Config(ConfigCommand),
    /// `shutdown`: stop the node agent.
    Shutdown,
    /// `cluster help`.
    ClusterHelp,
    /// `cluster membership`.
    ClusterMembership,
    /// `cluster info`.
    ClusterInfo,
    /// `cluster nodename`.
    ClusterNodename,
    /// `cluster nodeaddr`.
    ClusterNodeaddr,
    /// `cluster duravip show [tables]`.
    DuravipShow {
        /// `tables` form (XML state tables).
        tables: bool,
    },
    /// `cluster duravip move VIP to NODE`.
    DuravipMove {
        /// IP address or binding name.
        vip: String,
        /// Exact Spread node name of the new owner.
        node: String,
    },
    /// `cluster duravip announce view`.
    DuravipAnnounceView,
    /// `cluster duravip debug on|off`.
    DuravipDebug(bool),
    /// `cluster abort <id>`: abort a cluster job.
    ClusterAbort(String),
    /// `cluster arp show`: the kernel's neighbour table (read-only).
    ArpShow,
    /// `cluster duravip release all`: give up every locally owned DuraVIP.
    DuravipRelease,
    /// `cluster reset`: reconnect to the bus (DuraVIPs are renegotiated).
    ClusterReset,
    /// `cluster shared list`.
    SharedList,
    /// `cluster shared show <object> [from <node>]`.
    SharedShow {
        /// Object name.
        object: String,
        /// One node's contribution only.
        from: Option<String>,
    },
    /// `cluster show logs`.
    ShowLogs,
    /// Anything else (possibly an operator-mapped command), verbatim.
    Other(String),
}

/// Splits off the first `n` white-space separated words; returns them and the verbatim rest
/// (leading white space removed, everything else kept).
pub fn split_words(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut words = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while words.len() < n && !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        words.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (words, rest)
}

fn prepare(line: &str) -> Result<(bool, &str), CommandError> {
    if line.len() > MAX_LINE {
        return Err(CommandError::TooLong(line.len()));
    }
    let line = line.trim_end_matches(['\r', '\n']).trim();
    let (w, rest) = split_words(line, 1);
    match w.first() {
        Some(x) if x.eq_ignore_ascii_case("xml") => Ok((true, rest.trim_end())),
        _ => Ok((false, line)),
    }
}

fn unknown(line: &str) -> CommandError {
    let mut s: String = line.chars().take(80).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    CommandError::Unknown(s)
}

fn nonempty(s: &str, usage: &'static str) -> Result<String, CommandError> {
    if s.is_empty() {
        Err(CommandError::Usage(usage))
    } else {
        Ok(s.to_string())
    }
}

fn config(rest: &str) -> Result<ConfigCommand, CommandError> {
    const USAGE: &str =
        "config {get|set|eval|unset|show|showrecurse|locate|reload|begin|commit|rollback|replay} [scope …] [option [value]]";
    let (w, args) = split_words(rest, 1);
    let sub = w
        .first()
        .ok_or(CommandError::Usage(USAGE))?
        .to_ascii_lowercase();
    match sub.as_str() {
        "get" | "set" | "eval" | "unset" | "show" | "showrecurse" | "locate" | "reload"
        | "begin" | "commit" | "rollback" | "replay" => Ok(ConfigCommand {
            sub,
            args: args.to_string(),
        }),
        _ => Err(CommandError::Usage(USAGE)),
    }
}

/// Parses one manager console line.
pub fn parse_manager_line(line: &str) -> Result<Parsed<ManagerCommand>, CommandError> {
    use ManagerCommand as M;
    let (xml, line) = prepare(line)?;
    let (w, _) = split_words(line, 3);
    let lw: Vec<String> = w.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lw: Vec<&str> = lw.iter().map(String::as_str).collect();
    let rest = |n: usize| split_words(line, n).1;
    let command = match lw.as_slice() {
        [] => M::Empty,
        ["broadcast", ..] => M::Broadcast(nonempty(rest(1), "broadcast <command>")?),
        ["subcluster", "broadcast" | "retrieve", ..] => {
            let (ws, cmd) = split_words(line, 3);
            let usage = if lw[1] == "broadcast" {
                "subcluster broadcast <subcluster> <command>"
            } else {
                "subcluster retrieve <subcluster> <command>"
            };
            if ws.len() < 3 || cmd.is_empty() {
                return Err(CommandError::Usage(usage));
            }
            let (subcluster, command) = (ws[2].to_string(), cmd.to_string());
            if lw[1] == "broadcast" {
                M::SubclusterBroadcast {
                    subcluster,
                    command,
                }
            } else {
                M::SubclusterRetrieve {
                    subcluster,
                    command,
                }
            }
        }
        ["subcluster", ..] => {
            return Err(CommandError::Usage(
                "subcluster {broadcast|retrieve} <subcluster> <command>",
            ))
        }
        ["flush", "control", "cache"] if rest(3).is_empty() => M::FlushControlCache,
        ["help", ..] => M::Help(Some(rest(1)).filter(|s| !s.is_empty()).map(str::to_string)),
        ["info"] if rest(1).is_empty() => M::Info,
        ["retrieve", ..] => M::Retrieve(nonempty(rest(1), "retrieve <command>")?),
        ["retrieve_node" | "unicast", ..] => {
            let (ws, cmd) = split_words(line, 2);
            let usage = if lw[0] == "unicast" {
                "unicast <node> <command>"
            } else {
                "retrieve_node <node> <command>"
            };
            if ws.len() < 2 || cmd.is_empty() {
                return Err(CommandError::Usage(usage));
            }
            let (node, command) = (ws[1].to_string(), cmd.to_string());
            if lw[0] == "unicast" {
                M::Unicast { node, command }
            } else {
                M::RetrieveNode { node, command }
            }
        }
        ["show", "cluster", "membership"] if rest(3).is_empty() => M::ShowClusterMembership,
        ["show", "logs"] if rest(2).is_empty() => M::ShowLogs,
        ["shutdown"] if rest(1).is_empty() => M::Shutdown,
        ["version"] if rest(1).is_empty() => M::Version,
        ["config", ..] => M::Config(config(rest(1))?),
        _ => return Err(unknown(line)),
    };
    Ok(Parsed { xml, command })
}

/// Parses one node console line (commands arriving over the bus or typed locally).
pub fn parse_node_line(line: &str) -> Result<Parsed<NodeCommand>, CommandError> {
    use NodeCommand as N;
    let (xml, line) = prepare(line)?;
    let (w, _) = split_words(line, 4);
    let lw: Vec<String> = w.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lw: Vec<&str> = lw.iter().map(String::as_str).collect();
    let rest = |n: usize| split_words(line, n).1;
    let command = match lw.as_slice() {
        [] => N::Empty,
        ["version"] if rest(1).is_empty() => N::Version,
        ["shutdown"] if rest(1).is_empty() => N::Shutdown,
        ["help", ..] => N::Help(Some(rest(1)).filter(|s| !s.is_empty()).map(str::to_string)),
        ["config", ..] => N::Config(config(rest(1))?),
        ["cluster", "help"] => N::ClusterHelp,
        ["cluster", "membership"] if rest(2).is_empty() => N::ClusterMembership,
        ["cluster", "info"] if rest(2).is_empty() => N::ClusterInfo,
        ["cluster", "nodename"] if rest(2).is_empty() => N::ClusterNodename,
        ["cluster", "nodeaddr"] if rest(2).is_empty() => N::ClusterNodeaddr,
        ["cluster", "duravip", "show"] if rest(3).is_empty() => N::DuravipShow { tables: false },
        ["cluster", "duravip", "show", "tables"] if rest(4).is_empty() => {
            N::DuravipShow { tables: true }
        }
        ["cluster", "duravip", "announce", "view"] if rest(4).is_empty() => N::DuravipAnnounceView,
        ["cluster", "duravip", "debug", v] if rest(4).is_empty() && (*v == "on" || *v == "off") => {
            N::DuravipDebug(*v == "on")
        }
        ["cluster", "duravip", "move", ..] => {
            let (ws, tail) = split_words(line, 6);
            if ws.len() != 6 || !tail.is_empty() || !ws[4].eq_ignore_ascii_case("to") {
                return Err(CommandError::Usage(
                    "cluster duravip move <ip-or-name> to <node>",
                ));
            }
            N::DuravipMove {
                vip: ws[3].to_string(),
                node: ws[5].to_string(),
            }
        }
        ["cluster", "duravip", "release", "all"] if rest(4).is_empty() => N::DuravipRelease,
        ["cluster", "duravip", ..] => {
            return Err(CommandError::Usage(
                "cluster duravip {show [tables]|move <vip> to <node>|announce view|debug on|off|release all}",
            ))
        }
        ["cluster", "abort", id] if rest(3).is_empty() => N::ClusterAbort((*id).to_string()),
        ["cluster", "abort", ..] => return Err(CommandError::Usage("cluster abort <id>")),
        ["cluster", "arp", "show"] if rest(3).is_empty() => N::ArpShow,
        ["cluster", "reset"] if rest(2).is_empty() => N::ClusterReset,
        ["cluster", "show", "logs"] if rest(3).is_empty() => N::ShowLogs,
        ["cluster", "shared", "list"] if rest(3).is_empty() => N::SharedList,
        ["cluster", "shared", "show", ..] => {
            let (ws, tail) = split_words(line, 6);
            let usage = CommandError::Usage("cluster shared show <object> [from <node>]");
            match ws.len() {
                4 if tail.is_empty() => N::SharedShow {
                    object: ws[3].to_string(),
                    from: None,
                },
                6 if tail.is_empty() && ws[4].eq_ignore_ascii_case("from") => N::SharedShow {
                    object: ws[3].to_string(),
                    from: Some(ws[5].to_string()),
                },
                _ => return Err(usage),
            }
        }
        _ => N::Other(line.to_string()),
    };
    Ok(Parsed { xml, command })
}

impl fmt::Display for ConfigCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.args.is_empty() {
            write!(f, "config {}", self.sub)
        } else {
            write!(f, "config {} {}", self.sub, self.args)
        }
    }
}

/// Short help of the manager, one line per command.
pub const MANAGER_HELP: &[(&str, &str)] = &[
    (
        "broadcast",
        "broadcast <command>                        run a command on every node",
    ),
    (
        "config",
        "config {get|set|eval|unset|show|showrecurse|locate|reload} …  manager configuration",
    ),
    (
        "flush",
        "flush control cache                        forget stored responses",
    ),
    (
        "help",
        "help [command]                             this list, or help on one command",
    ),
    (
        "info",
        "info                                       bus daemon, groups and leader",
    ),
    (
        "retrieve",
        "retrieve <command>                         responses to an earlier broadcast",
    ),
    (
        "retrieve_node",
        "retrieve_node <node> <command>             one node's stored response",
    ),
    (
        "show",
        "show cluster membership | show logs        members and their roles | aggregated logs",
    ),
    (
        "shutdown",
        "shutdown                                   stop the cluster manager",
    ),
    (
        "subcluster",
        "subcluster {broadcast|retrieve} <s> <command>  the same for one subcluster",
    ),
    (
        "unicast",
        "unicast <node> <command>                   run a command on one node",
    ),
    (
        "version",
        "version                                    version banner",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use ManagerCommand as M;

    fn m(line: &str) -> ManagerCommand {
        parse_manager_line(line).unwrap().command
    }

    #[test]
    fn manager_commands() {
        assert_eq!(
            m("broadcast  sieve:sieve1   flush cache"),
            M::Broadcast("sieve:sieve1   flush cache".into())
        );
        assert_eq!(
            m("subcluster broadcast west cluster duravip announce view"),
            M::SubclusterBroadcast {
                subcluster: "west".into(),
                command: "cluster duravip announce view".into()
            }
        );
        assert_eq!(
            m("subcluster retrieve west version"),
            M::SubclusterRetrieve {
                subcluster: "west".into(),
                command: "version".into()
            }
        );
        assert_eq!(m("flush control cache"), M::FlushControlCache);
        assert_eq!(m("help"), M::Help(None));
        assert_eq!(m("help broadcast"), M::Help(Some("broadcast".into())));
        assert_eq!(m("info"), M::Info);
        assert_eq!(
            m("retrieve config get \"x y\""),
            M::Retrieve("config get \"x y\"".into())
        );
        assert_eq!(
            m("retrieve_node n1 version"),
            M::RetrieveNode {
                node: "n1".into(),
                command: "version".into()
            }
        );
        assert_eq!(m("SHOW Cluster membership"), M::ShowClusterMembership);
        assert_eq!(m("shutdown"), M::Shutdown);
        assert_eq!(
            m("unicast n1 cluster info"),
            M::Unicast {
                node: "n1".into(),
                command: "cluster info".into()
            }
        );
        assert_eq!(m("version\r\n"), M::Version);
        assert_eq!(m("   "), M::Empty);
        assert_eq!(
            m("config set Logs Control_Cache \"/tmp/x\""),
            M::Config(ConfigCommand {
                sub: "set".into(),
                args: "Logs Control_Cache \"/tmp/x\"".into()
            })
        );
        let p = parse_manager_line("xml show cluster membership").unwrap();
        assert!(p.xml);
        assert_eq!(p.command, M::ShowClusterMembership);
    }

    #[test]
    fn manager_errors_are_one_line() {
        let e = |l: &str| parse_manager_line(l).unwrap_err().to_string();
        assert_eq!(
            e("frobnicate now"),
            "Unknown command 'frobnicate now'. Type 'help' for a list of commands."
        );
        assert_eq!(e("broadcast"), "usage: broadcast <command>");
        assert_eq!(e("unicast n1"), "usage: unicast <node> <command>");
        assert_eq!(
            e("subcluster broadcast west"),
            "usage: subcluster broadcast <subcluster> <command>"
        );
        assert_eq!(
            e("subcluster frob"),
            "usage: subcluster {broadcast|retrieve} <subcluster> <command>"
        );
        assert_eq!(
            e("info please"),
            "Unknown command 'info please'. Type 'help' for a list of commands."
        );
        assert_eq!(
            e(&"x".repeat(MAX_LINE + 1)),
            format!("Command line too long ({} bytes, limit 8192)", MAX_LINE + 1)
        );
        assert!(e("config frob").starts_with("usage: config"));
        for l in ["broadcast", "frob", "subcluster", "config"] {
            assert!(!e(l).contains('\n'));
        }
    }

    #[test]
    fn node_commands() {
        use NodeCommand as N;
        let n = |l: &str| parse_node_line(l).unwrap().command;
        assert_eq!(
            n("cluster duravip move 10.0.0.5 to n2"),
            N::DuravipMove {
                vip: "10.0.0.5".into(),
                node: "n2".into()
            }
        );
        assert_eq!(
            n("cluster duravip show tables"),
            N::DuravipShow { tables: true }
        );
        assert_eq!(n("cluster duravip show"), N::DuravipShow { tables: false });
        assert_eq!(n("cluster duravip announce view"), N::DuravipAnnounceView);
        assert_eq!(n("cluster membership"), N::ClusterMembership);
        assert_eq!(
            n("sieve:sieve1 flush cache"),
            N::Other("sieve:sieve1 flush cache".into())
        );
        assert!(parse_node_line("cluster duravip move 10.0.0.5 n2").is_err());
        assert!(
            parse_node_line("xml cluster duravip show tables")
                .unwrap()
                .xml
        );
    }

    #[test]
    fn split_keeps_rest_verbatim() {
        assert_eq!(split_words("  a  b   c  d ", 2), (vec!["a", "b"], "c  d "));
        assert_eq!(split_words("a", 3), (vec!["a"], ""));
    }
}
