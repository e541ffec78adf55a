//! Process-level helpers shared by the `eccmgr` and `mbus-node` binaries: control listeners
//! from a `Control_Listener` scope, host names, and the in-memory demo cluster.

use std::path::Path;

use tokio::net::{TcpListener, UnixListener};

use super::manager::manager_private_name;
use crate::console::server::Listener;
use crate::ecconf::Config;

/// The short host name (from `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The manager's bus name for this host.
pub fn manager_name(host: &str) -> String {
    manager_private_name(host)
}

/// `Listen` addresses of `Control_Listener` (default `/tmp/2025`) with their `File_Mode`.
///
/// Every listener is served: a TCP listener whose effective `Enable_Authentication` is true
/// asks for a login before any command (see [`crate::console::access`]); Unix sockets
/// identify the connecting OS user by peer credentials.
pub fn control_addresses(cfg: &Config, default: &str) -> Vec<(String, Option<u32>)> {
    control_addresses_all(cfg, default)
}

fn control_addresses_all(cfg: &Config, default: &str) -> Vec<(String, Option<u32>)> {
    let Some(cl) = cfg.root.child("Control_Listener", None) else {
        return vec![(default.to_string(), None)];
    };
    if cl.get("Enable").and_then(|o| o.value.as_bool()) == Some(false) {
        return Vec::new();
    }
    let outer_mode = cl
        .get_str("File_Mode")
        .and_then(|m| u32::from_str_radix(m, 8).ok());
    let v: Vec<(String, Option<u32>)> = cl
        .children_named("Listen")
        .filter_map(|l| {
            let mode = l
                .get_str("File_Mode")
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .or(outer_mode);
            l.instance.clone().map(|i| (i, mode))
        })
        .collect();
    if v.is_empty() {
        vec![(default.to_string(), outer_mode)]
    } else {
        v
    }
}

/// Binds one control address: a path (Unix socket; a stale socket file is replaced) or
/// `host:port` / `:port` (TCP).
pub async fn bind_control(addr: &str, mode: Option<u32>) -> std::io::Result<Listener> {
    if addr.starts_with('/') {
        let p = Path::new(addr);
        if p.exists() {
            if tokio::net::UnixStream::connect(p).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{addr} is in use"),
                ));
            }
            std::fs::remove_file(p)?;
        }
        let l = UnixListener::bind(p)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode.unwrap_or(0o660)))?;
        Ok(Listener::Unix(l))
    } else {
        let a = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr.to_string()
        };
        Ok(Listener::Tcp(TcpListener::bind(a).await?))
    }
}

/// Parses a demo cluster spec `east=n1,n2;west=n3` into (subcluster, node) pairs.
pub fn parse_demo(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in spec.split(';').filter(|p| !p.trim().is_empty()) {
        let (sc, nodes) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': expected subcluster=node,node"))?;
        for n in nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.push((sc.trim().to_string(), n.to_string()));
        }
    }
    if out.is_empty() {
        return Err("empty demo cluster".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_listeners_with_authentication_are_served() {
        let cfg = Config::from_str(
            "e.conf",
            r#"Control_Listener {
  Enable_Authentication = "true"
  File_Mode = 0640
  Listen "/tmp/2025" { Enable_Authentication = "false" }
  Listen "127.0.0.1:2025" { }
  Listen "127.0.0.1:2026" { Enable_Authentication = false }
}"#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            control_addresses(&cfg, "/tmp/x"),
            vec![
                ("/tmp/2025".to_string(), Some(0o640)),
                ("127.0.0.1:2025".to_string(), Some(0o640)),
                ("127.0.0.1:2026".to_string(), Some(0o640))
            ]
        );
        assert_eq!(
            control_addresses(&Config::default(), "/tmp/x"),
            vec![("/tmp/x".to_string(), None)]
        );
        assert_eq!(parse_demo("east=n1,n2;west=n3").unwrap().len(), 3);
        assert!(parse_demo("nonsense").is_err());
    }
}
