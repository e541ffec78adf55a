//! Targets for the console: command lines (`crate::console::command`) and control-socket
//! frames (`crate::console::frame`).

use bytes::BytesMut;

use crate::console::command::{
    parse_manager_line, parse_node_line, CommandError, ManagerCommand, NodeCommand, MAX_LINE,
};
use crate::console::frame::{
    decode_request, decode_response, encode_request, encode_response, MAX_RESPONSE,
};
use crate::ecconf::tree::Config;

/// Most frames taken from one input.
const MAX_FRAMES: usize = 64;

/// A small manager configuration the `config …` commands of the fuzzed lines run against.
const SAMPLE_CONF: &str = r#"
Logs { logfile = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}" file_mode = "0640" }
Control_Listener {
  Enable_Authentication = "true"
  Listen "/tmp/2025" { Enable_Authentication = "false" }
  Listen "127.0.0.1:2025" { }
}
Relay_Hosts = ( 127.0.0.0/8 10.0.0.0/24 )
peers = [ node1 = "192.168.0.10" ]
"#;

/// One console line (input: UTF-8 text), parsed as a manager line and as a node line.
///
/// Checks: only lines longer than `MAX_LINE` are refused as too long; every parsed command
/// renders to a canonical line that parses back to the same command (so verbatim node
/// commands are kept byte for byte); error texts are one line; `config …` commands (all but
/// `reload`) run against a sample configuration and answer with bounded output.
pub fn console_command(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let manager = parse_manager_line(line);
    let node = parse_node_line(line);
    for err in [manager.as_ref().err(), node.as_ref().err()]
        .into_iter()
        .flatten()
    {
        let text = err.to_string();
        assert!(!text.contains('\n') || matches!(err, CommandError::Unknown(_)));
        assert_eq!(
            matches!(err, CommandError::TooLong(_)),
            line.len() > MAX_LINE
        );
    }
    if let Ok(p) = manager {
        let canonical = render(p.xml, &manager_line(&p.command));
        assert_eq!(
            parse_manager_line(&canonical),
            Ok(p.clone()),
            "rendered: {canonical:?}"
        );
        if let ManagerCommand::Config(c) = &p.command {
            run_config(&c.sub, &c.args);
        }
    }
    if let Ok(p) = node {
        let canonical = render(p.xml, &node_line(&p.command));
        assert_eq!(
            parse_node_line(&canonical),
            Ok(p),
            "rendered: {canonical:?}"
        );
    }
}

fn render(xml: bool, line: &str) -> String {
    if xml {
        format!("xml {line}")
    } else {
        line.to_string()
    }
}

fn manager_line(c: &ManagerCommand) -> String {
    use ManagerCommand as M;
    match c {
        M::Empty => String::new(),
        M::Broadcast(cmd) => format!("broadcast {cmd}"),
        M::SubclusterBroadcast {
            subcluster,
            command,
        } => format!("subcluster broadcast {subcluster} {command}"),
        M::SubclusterRetrieve {
            subcluster,
            command,
        } => format!("subcluster retrieve {subcluster} {command}"),
        M::FlushControlCache => "flush control cache".into(),
        M::Help(None) => "help".into(),
        M::Help(Some(h)) => format!("help {h}"),
        M::Info => "info".into(),
        M::Retrieve(cmd) => format!("retrieve {cmd}"),
        M::RetrieveNode { node, command } => format!("retrieve_node {node} {command}"),
        M::ShowClusterMembership => "show cluster membership".into(),
        M::ShowLogs => "show logs".into(),
        M::Shutdown => "shutdown".into(),
        M::Unicast { node, command } => format!("unicast {node} {command}"),
        M::Version => "version".into(),
        M::Config(cc) => cc.to_string(),
    }
}

fn node_line(c: &NodeCommand) -> String {
    use NodeCommand as N;
    match c {
        N::Empty => String::new(),
        N::Version => "version".into(),
        N::Shutdown => "shutdown".into(),
        N::Help(None) => "help".into(),
        N::Help(Some(h)) => format!("help {h}"),
        N::Config(cc) => cc.to_string(),
        N::ClusterHelp => "cluster help".into(),
        N::ClusterMembership => "cluster membership".into(),
        N::ClusterInfo => "cluster info".into(),
        N::ClusterNodename => "cluster nodename".into(),
        N::ClusterNodeaddr => "cluster nodeaddr".into(),
        N::DuravipShow { tables: false } => "cluster duravip show".into(),
        N::DuravipShow { tables: true } => "cluster duravip show tables".into(),
        N::DuravipMove { vip, node } => format!("cluster duravip move {vip} to {node}"),
        N::DuravipAnnounceView => "cluster duravip announce view".into(),
        N::DuravipDebug(on) => format!("cluster duravip debug {}", if *on { "on" } else { "off" }),
        N::ClusterAbort(id) => format!("cluster abort {id}"),
        N::ArpShow => "cluster arp show".into(),
        N::DuravipRelease => "cluster duravip release all".into(),
        N::ClusterReset => "cluster reset".into(),
        N::SharedList => "cluster shared list".into(),
        N::SharedShow { object, from: None } => format!("cluster shared show {object}"),
        N::SharedShow {
            object,
            from: Some(n),
        } => format!("cluster shared show {object} from {n}"),
        N::ShowLogs => "cluster show logs".into(),
        N::Other(line) => line.clone(),
    }
}

/// Runs one `config` sub-command on the sample configuration (reload needs the file system
/// and is left out) and checks the answer's size is bounded by the configuration and input.
fn run_config(sub: &str, args: &str) {
    if matches!(sub, "reload" | "begin" | "commit" | "rollback" | "replay") {
        return;
    }
    let mut cfg = Config::from_str(
        "sample.conf",
        SAMPLE_CONF,
        std::path::Path::new("/nonexistent"),
    )
    .expect("the sample configuration parses");
    let out = cfg.console(sub, args);
    assert!(
        out.len() <= 4 * (SAMPLE_CONF.len() + args.len()) + 256,
        "config {sub}: {} bytes of output for {} bytes of arguments",
        out.len(),
        args.len()
    );
}

/// A control-socket byte stream (input: the bytes), read as requests (what the server reads)
/// and as responses (what `ec_console` reads).
///
/// Checks per frame: bytes consumed ≤ bytes given; the payload re-encodes to exactly the bytes
/// consumed; a response never announces more than `MAX_RESPONSE` bytes. Frames are taken in
/// sequence until the input runs out or is refused.
pub fn control_frame(data: &[u8]) {
    let mut rest = data;
    for _ in 0..MAX_FRAMES {
        let Ok(Some(d)) = decode_request(rest) else {
            break;
        };
        assert!(d.consumed <= rest.len() && d.consumed >= 4);
        let mut out = BytesMut::new();
        encode_request(&d.payload, &mut out).expect("a decoded request re-encodes");
        assert_eq!(
            Some(&out[..]),
            rest.get(..d.consumed),
            "request re-encoding"
        );
        rest = rest.get(d.consumed..).unwrap_or_default();
    }
    let mut rest = data;
    for _ in 0..MAX_FRAMES {
        let Ok(Some(d)) = decode_response(rest) else {
            break;
        };
        assert!(d.consumed <= rest.len() && d.payload.len() <= MAX_RESPONSE);
        let mut out = BytesMut::new();
        encode_response(&d.payload, &mut out);
        // A short payload may arrive in the long (type 2) form; the encoder picks the short one.
        let head = d.consumed - d.payload.len();
        if head == out.len() - d.payload.len() {
            assert_eq!(
                Some(&out[..]),
                rest.get(..d.consumed),
                "response re-encoding"
            );
        }
        let again = decode_response(&out).expect("re-encoded response decodes");
        assert_eq!(again.map(|a| a.payload), Some(d.payload.clone()));
        rest = rest.get(d.consumed..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::command::Parsed;

    #[test]
    fn sample_lines_round_trip() {
        for line in [
            "broadcast sieve:sieve1 flush cache",
            "xml show cluster membership",
            "subcluster broadcast west  config   reload",
            "config set Relay_Hosts = ( 127.0.0.0/8 )",
            "config showrecurse",
            "cluster duravip move 10.0.0.1 to n1",
        ] {
            console_command(line.as_bytes());
        }
        assert!(matches!(
            parse_manager_line("xml show cluster membership"),
            Ok(Parsed { xml: true, .. })
        ));
        control_frame(b"\x00\x01\x00\x07version\x00\x01\x00\x04help");
        control_frame(b"\x00\x02\x00\x00\x00\x05large");
    }
}
