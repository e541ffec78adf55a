//! Target for the `spread.conf` / `mbus.conf` parser (`crate::config`).

use std::net::{IpAddr, Ipv4Addr};

use crate::config::{Config, MAX_HOSTS, MAX_SEGMENTS};

/// Longest configuration text parsed per run.
const MAX_CONF_TEXT: usize = 64 * 1024;

/// Resolves name-only hosts whose name starts with `r` to an address derived from the name
/// (so both the resolved and the unresolved paths run); everything else is unknown.
fn fake_resolver(name: &str) -> Vec<IpAddr> {
    if name.starts_with('r') {
        let n = name.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, n))]
    } else {
        Vec::new()
    }
}

/// `spread.conf` / `mbus.conf` text (input: the file's bytes, UTF-8).
///
/// Checks: errors display as one line `path:line:col: …` whose line lies inside the text;
/// a parsed configuration stays within the 5.0.1 maxima; printing it (`Display`) and parsing
/// the print gives an equal configuration (printing is a fixed point from then on).
pub fn spread_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > MAX_CONF_TEXT {
        return;
    }
    let parsed = match Config::parse_full(text, "fuzz.conf", &mut fake_resolver) {
        Ok(p) => p,
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "multi-line error: {shown:?}");
            assert!(
                shown.starts_with("fuzz.conf:"),
                "error without a path: {shown:?}"
            );
            let lines = text.matches('\n').count() + 1;
            assert!(
                usize::try_from(e.pos.line).is_ok_and(|l| l <= lines),
                "error line {} beyond the {lines} lines of the text",
                e.pos.line
            );
            return;
        }
    };
    let cfg = parsed.config;
    assert!(cfg.segments.len() <= MAX_SEGMENTS);
    assert!(cfg.hosts().count() <= MAX_HOSTS);
    let printed = cfg.to_string();
    let again = Config::parse_full(&printed, "printed.conf", &mut fake_resolver)
        .unwrap_or_else(|e| panic!("printed configuration does not parse ({e}):\n{printed}"))
        .config;
    assert_eq!(
        again, cfg,
        "print/parse changed the configuration:\n{printed}"
    );
    assert_eq!(again.to_string(), printed, "printing is not a fixed point");
}

/// `spread.access_ip` text ([`crate::session::auth::parse_access_ip`]); input is the file's
/// bytes (the daemon reads it as UTF-8 text, so other bytes are not a file it would parse).
///
/// Checks: at most one rule per line; every rule matches its own network address; an error names
/// a line that exists; printing the rules (`unix` / `a.b.c.d/prefix`) and parsing that gives the
/// same rules.
pub fn access_ip(data: &[u8]) {
    use crate::session::auth::{parse_access_ip, IpRule};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    match parse_access_ip(text) {
        Ok(rules) => {
            assert!(
                rules.len() <= lines,
                "{} rules from {lines} lines",
                rules.len()
            );
            let printed: String = rules
                .iter()
                .map(|r| {
                    assert!(r.prefix <= 32);
                    assert!(r.matches(r.network), "{r:?} does not match its network");
                    if *r == IpRule::UNIX {
                        "unix\n".to_owned()
                    } else {
                        format!("{}/{}\n", r.network, r.prefix)
                    }
                })
                .collect();
            assert_eq!(parse_access_ip(&printed), Ok(rules), "printed: {printed:?}");
        }
        Err(line) => assert!(
            (1..=lines).contains(&line),
            "error on line {line} of {lines}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configurations of the captures parse, so the target checks the print/parse
    /// property on them rather than stopping at an error.
    #[test]
    fn captured_configurations_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/spread_conf");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("cap-") || name == "mbus-subclusters.conf" {
                let text = std::fs::read_to_string(&p).unwrap();
                Config::parse_full(&text, &name, &mut fake_resolver)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert!(n >= 10);
    }
}
