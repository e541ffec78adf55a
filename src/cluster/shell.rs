//! tokio shells around the manager and node cores: one task owns the core, selects over the
//! control-socket requests and the bus, carries out the core's outputs after every input, and
//! reconnects to the bus (with back-off) when the daemon goes away.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::bus::{Bus, BusError, BusEvent};
use super::duravip::Plumber;
use super::exec::run_blocking;
use super::logship::{configured_logs, LogTail};
use super::manager::ManagerCore;
use super::node::{Exec, NodeCore, NodeOutput, ReplyTo};
use crate::console::access::Access;
use crate::console::server::{serve, AccessHandle, Event, Limits, Listener, Reply, Request};
use crate::ecconf::Config;

/// Wall-clock seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Back-off between reconnect attempts: doubles from 200 ms to 5 s.
#[derive(Debug, Clone, Copy)]
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        d
    }
}

/// Running control listeners: requests in, a shutdown switch, and a way to wait for every
/// connection task to finish writing.
struct Listeners {
    requests: mpsc::Receiver<Event>,
    access: AccessHandle,
    shutdown: watch::Sender<bool>,
    alive: mpsc::Receiver<()>,
}

impl Listeners {
    /// Starts serving; who may log in and run what comes from `config` (read once).
    fn start(listeners: Vec<Listener>, limits: Limits, config: &Config) -> Self {
        let (access, warnings) = Access::from_config(config);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let access: AccessHandle =
            std::sync::Arc::new(parking_lot::RwLock::new(std::sync::Arc::new(access)));
        let (tx, requests) = mpsc::channel(64);
        let (shutdown, sd_rx) = watch::channel(false);
        let (alive_tx, alive) = mpsc::channel(1);
        for l in listeners {
            tokio::spawn(serve(
                l,
                tx.clone(),
                limits,
                access.clone(),
                sd_rx.clone(),
                alive_tx.clone(),
            ));
        }
        Self {
            requests,
            access,
            shutdown,
            alive,
        }
    }

    /// After a `config …` line: the new policy, password store and accounting file apply to
    /// the next command of every session.
    fn refresh(&self, config: &Config) {
        let (new, warnings) = self.access.read().refreshed(config);
        for w in warnings {
            tracing::warn!("{w}");
        }
        *self.access.write() = std::sync::Arc::new(new);
    }

    /// Stops accepting, lets open connections finish their last reply (bounded: 2 s).
    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.requests.close();
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(10), self.requests.recv()).await
        {
            let Event::Line(req) = ev else { continue };
            let _ = req.reply.send(Reply {
                text: "Shutting down.".into(),
                close: true,
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.alive.recv()).await;
    }
}

fn persist(core: &mut ManagerCore, file: Option<&PathBuf>) {
    if !core.cache_mut().take_dirty() {
        return;
    }
    let Some(path) = file else { return };
    let tmp = path.with_extension("tmp");
    let text = core.cache_mut().encode();
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        tracing::warn!(
            "cannot persist the control cache to {}: {e}",
            path.display()
        );
    }
}

/// Runs the manager until `shutdown` is typed on a console (or every listener is gone).
/// `connect` is called to (re)attach to the bus.
pub async fn run_manager<B, C, F>(
    mut core: ManagerCore,
    mut connect: C,
    listeners: Vec<Listener>,
    limits: Limits,
    cache_file: Option<PathBuf>,
) where
    B: Bus,
    C: FnMut() -> F,
    F: Future<Output = Result<B, BusError>>,
{
    if let Some(path) = &cache_file {
        if let Ok(text) = std::fs::read_to_string(path) {
            match core.cache_mut().decode(now_secs(), &text) {
                Ok(()) => tracing::info!(
                    "loaded {} cached commands from {}",
                    core.cache_mut().len(),
                    path.display()
                ),
                Err(e) => tracing::warn!("ignoring {}: {e}", path.display()),
            }
        }
    }
    let mut ls = Listeners::start(listeners, limits, core.config());
    let mut bus: Option<B> = None;
    let mut backoff = Backoff(Backoff::MIN);
    let mut retry_at = Instant::now();
    let mut ever_connected = false;
    loop {
        let mut stop = false;
        match bus.as_mut() {
            None => {
                tokio::select! {
                    r = async { tokio::time::sleep_until(retry_at).await; connect().await } => match r {
                        Ok(b) => {
                            let (p, d) = (b.private_name().to_string(), b.daemon());
                            if ever_connected {
                                tracing::warn!("reconnected to daemon {d} as {p}");
                            } else {
                                tracing::info!("connected to daemon {d} as {p}");
                            }
                            ever_connected = true;
                            core.connected(&p, &d);
                            bus = Some(b);
                            backoff = Backoff(Backoff::MIN);
                        }
                        Err(e) => {
                            let wait = backoff.next();
                            tracing::warn!("cannot attach to the bus: {e}; retrying in {wait:?}");
                            retry_at = Instant::now() + wait;
                        }
                    },
                    req = ls.requests.recv() => match req {
                        Some(req) => {
                            let changes = changes_config(&req);
                            stop = manager_request(&mut core, req);
                            if changes {
                                ls.refresh(core.config());
                            }
                        }
                        None => return,
                    },
                }
            }
            Some(b) => {
                tokio::select! {
                    ev = b.recv() => match ev {
                        Some(BusEvent::Disconnected) | None => {
                            tracing::warn!("lost the bus connection; reconnecting");
                            core.on_bus(now_secs(), BusEvent::Disconnected);
                            bus = None;
                            retry_at = Instant::now();
                        }
                        Some(ev) => core.on_bus(now_secs(), ev),
                    },
                    req = ls.requests.recv() => match req {
                        Some(req) => {
                            let changes = changes_config(&req);
                            stop = manager_request(&mut core, req);
                            if changes {
                                ls.refresh(core.config());
                            }
                        }
                        None => return,
                    },
                }
            }
        }
        write_logs(&mut core);
        while let Some(a) = core.poll() {
            if let Some(b) = bus.as_mut() {
                if let Err(e) = b.act(a).await {
                    tracing::warn!("bus request failed: {e}");
                }
            }
        }
        persist(&mut core, cache_file.as_ref());
        if stop {
            ls.stop().await;
            // Leave the groups cleanly by dropping the connection after the last replies.
            drop(bus);
            return;
        }
    }
}

/// True for a console line that may change the live configuration (`config set|unset|reload|
/// commit`): the access rules are rebuilt after it.
fn changes_config(ev: &Event) -> bool {
    let Event::Line(r) = ev else { return false };
    let (w, _) = crate::console::command::split_words(&r.line, 3);
    let w: Vec<String> = w.iter().map(|s| s.to_ascii_lowercase()).collect();
    let w = if w.first().is_some_and(|x| x == "xml") {
        &w[1..]
    } else {
        &w[..]
    };
    w.first().is_some_and(|c| c == "config")
        && w.get(1)
            .is_some_and(|s| matches!(s.as_str(), "set" | "unset" | "reload" | "commit"))
}

/// Per-session state key of a console connection.
fn session_key(id: u64) -> String {
    format!("console:{id}")
}

/// Appends queued aggregated log text (as_logger) and acknowledges it to the nodes. A file
/// that cannot be written is not acknowledged: the node keeps the lines and ships them again
/// after its next subscription.
fn write_logs(core: &mut ManagerCore) {
    use std::io::Write as _;
    while let Some(w) = core.poll_log_write() {
        let written = w
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&w.path)
            })
            .and_then(|mut f| f.write_all(w.text.as_bytes()));
        match written {
            Ok(()) => core.log_written(&w),
            Err(e) => tracing::warn!("cannot append to {}: {e}", w.path.display()),
        }
    }
}

fn manager_request(core: &mut ManagerCore, ev: Event) -> bool {
    let req = match ev {
        Event::Line(r) => r,
        Event::Closed(id) => {
            core.session_closed(&session_key(id));
            return false;
        }
    };
    let r = core.console_as(now_secs(), &session_key(req.session.id), &req.line);
    let stop = r.shutdown;
    let _ = req.reply.send(Reply::from(r));
    stop
}

/// Runs a node agent until its listeners are gone and `stop` fires.
pub async fn run_node<B, C, F>(
    mut core: NodeCore,
    mut connect: C,
    listeners: Vec<Listener>,
    limits: Limits,
    mut plumber: Box<dyn Plumber>,
    mut stop: watch::Receiver<bool>,
) where
    B: Bus,
    C: FnMut() -> F,
    F: Future<Output = Result<B, BusError>>,
{
    let mut ls = Listeners::start(listeners, limits, core.config());
    let (done_tx, mut done_rx) = mpsc::channel::<(ReplyTo, String)>(64);
    let mut bus: Option<B> = None;
    let mut backoff = Backoff(Backoff::MIN);
    let mut retry_at = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut tails: Vec<(String, LogTail)> = configured_logs(&core.config().root)
        .into_iter()
        .map(|(name, path)| (name, LogTail::new(path)))
        .collect();
    loop {
        match bus.as_mut() {
            None => {
                tokio::select! {
                    r = async { tokio::time::sleep_until(retry_at).await; connect().await } => match r {
                        Ok(b) => {
                            let (p, d) = (b.private_name().to_string(), b.daemon());
                            tracing::info!("attached to daemon {d} as {p}");
                            core.reconnected(&p, &d);
                            bus = Some(b);
                            backoff = Backoff(Backoff::MIN);
                        }
                        Err(e) => {
                            let wait = backoff.next();
                            tracing::warn!("cannot attach to the bus: {e}; retrying in {wait:?}");
                            retry_at = Instant::now() + wait;
                        }
                    },
                    Some(req) = ls.requests.recv() => {
                        let changes = changes_config(&req);
                        node_request(&mut core, req);
                        if changes {
                            ls.refresh(core.config());
                        }
                    }
                    Some((to, out)) = done_rx.recv() => core.mapped_done(&to, &out),
                    _ = ticker.tick() => read_logs(&mut core, &mut tails),
                    _ = stop.changed() => break,
                }
            }
            Some(b) => {
                tokio::select! {
                    ev = b.recv() => match ev {
                        Some(BusEvent::Disconnected) | None => {
                            tracing::warn!("lost the bus connection; reconnecting");
                            core.on_bus(now_secs(), BusEvent::Disconnected);
                            bus = None;
                            retry_at = Instant::now();
                        }
                        Some(ev) => core.on_bus(now_secs(), ev),
                    },
                    Some(req) = ls.requests.recv() => {
                        let changes = changes_config(&req);
                        node_request(&mut core, req);
                        if changes {
                            ls.refresh(core.config());
                        }
                    }
                    Some((to, out)) = done_rx.recv() => core.mapped_done(&to, &out),
                    _ = ticker.tick() => {
                        read_logs(&mut core, &mut tails);
                        core.tick(now_secs());
                    }
                    _ = stop.changed() => break,
                }
            }
        }
        while let Some(o) = core.poll() {
            match o {
                NodeOutput::Bus(a) => {
                    if let Some(b) = bus.as_mut() {
                        if let Err(e) = b.act(a).await {
                            tracing::warn!("bus request failed: {e}");
                        }
                    }
                }
                NodeOutput::Reconnect => {
                    tracing::warn!("cluster reset: reattaching to the bus");
                    bus = None;
                    retry_at = Instant::now();
                }
                NodeOutput::Run(to, run) => {
                    let tx = done_tx.clone();
                    tokio::spawn(async move {
                        let out = tokio::task::spawn_blocking(move || run_blocking(&run))
                            .await
                            .unwrap_or_default();
                        let _ = tx.send((to, out)).await;
                    });
                }
                NodeOutput::Plumb {
                    add,
                    ip,
                    prefix,
                    iface,
                } => {
                    if add {
                        plumber.add(&ip, prefix, &iface);
                    } else {
                        plumber.del(&ip, prefix, &iface);
                    }
                }
            }
        }
        if core.stop_requested() {
            tracing::info!("shutdown requested on the console");
            break;
        }
    }
    // Clean exit: release every DuraVIP this node holds.
    core.on_bus(now_secs(), BusEvent::Disconnected);
    while let Some(o) = core.poll() {
        if let NodeOutput::Plumb {
            add: false,
            ip,
            prefix,
            iface,
        } = o
        {
            plumber.del(&ip, prefix, &iface);
        }
    }
    ls.stop().await;
}

/// Reads new lines of the node's logs (bounded per tick) into the core, connected or not.
fn read_logs(core: &mut NodeCore, tails: &mut [(String, LogTail)]) {
    for (name, tail) in tails {
        match tail.poll() {
            Ok(lines) if !lines.is_empty() => core.log_lines(name, lines),
            Ok(_) => {}
            Err(e) => tracing::debug!("log {name}: {e}"),
        }
    }
}

fn node_request(core: &mut NodeCore, ev: Event) {
    let req: Request = match ev {
        Event::Line(r) => r,
        Event::Closed(id) => {
            core.session_closed(&session_key(id));
            return;
        }
    };
    match core.execute_as(now_secs(), &session_key(req.session.id), &req.line) {
        Exec::Text(text) => {
            let _ = req.reply.send(Reply { text, close: false });
        }
        Exec::Run(run) => {
            let reply: oneshot::Sender<Reply> = req.reply;
            tokio::spawn(async move {
                let text = tokio::task::spawn_blocking(move || run_blocking(&run))
                    .await
                    .unwrap_or_default();
                let _ = reply.send(Reply { text, close: false });
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::bus::MemHub;
    use crate::cluster::duravip::LogPlumber;
    use crate::cluster::manager::ManagerSettings;
    use crate::cluster::node::NodeIdentity;
    use crate::console::client::{ConsoleClient, Endpoint};
    use crate::ecconf::Config;

    async fn until(c: &mut ConsoleClient, line: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.command(line).await.expect("console");
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "timed out on '{line}': {r}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manager_and_nodes_reconnect_after_losing_the_bus() {
        let hub = MemHub::new();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl");
        let listener = Listener::Unix(tokio::net::UnixListener::bind(&sock).unwrap());
        let (_stop_tx, stop_rx) = watch::channel(false);
        for n in ["n1", "n2"] {
            let h = hub.clone();
            let core = NodeCore::new(
                NodeIdentity::new(n, "east"),
                "",
                "",
                Config::default(),
                None,
            );
            tokio::spawn(run_node(
                core,
                move || std::future::ready(h.connect("ec0-00001", n)),
                Vec::new(),
                Limits::default(),
                Box::new(LogPlumber::default()),
                stop_rx.clone(),
            ));
        }
        let h = hub.clone();
        let core = ManagerCore::new(ManagerSettings::default(), "mgr", Config::default(), None);
        let mgr = tokio::spawn(run_manager(
            core,
            move || std::future::ready(h.connect("mgr", "mgr")),
            vec![listener],
            Limits::default(),
            None,
        ));
        let mut c = ConsoleClient::connect(
            &Endpoint::Unix(sock.display().to_string()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let two = |r: &str| r.matches("Node Type: Momentum").count() == 2;
        until(&mut c, "show cluster membership", two).await;

        hub.kill("#mgr#mgr");
        assert!(!hub.members("ec_cluster").contains(&"#mgr#mgr".to_string()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hub.members("ec_cluster").contains(&"#mgr#mgr".to_string()) {
            assert!(Instant::now() < deadline, "manager did not rejoin");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Either the manager already noticed (not connected) or it is back; eventually back.
        let r = c.command("broadcast version").await.unwrap();
        assert!(
            r.starts_with("Not connected to the bus") || r.starts_with("Sent to"),
            "{r}"
        );
        until(&mut c, "info", |r| {
            r.starts_with("Daemon: memory:mgr [#mgr#mgr]")
        })
        .await;
        let r = until(&mut c, "show cluster membership", two).await;
        assert!(r.contains("Node Type: Manager"), "{r}");

        hub.kill("#ec0-00001#n2");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hub
            .members("ec_cluster")
            .contains(&"#ec0-00001#n2".to_string())
        {
            assert!(Instant::now() < deadline, "node did not rejoin");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        until(&mut c, "show cluster membership", two).await;
        assert_eq!(
            c.command("broadcast cluster nodename").await.unwrap(),
            "Sent to 2 node(s) on ec_console."
        );
        until(&mut c, "retrieve cluster nodename", |r| {
            r == "n1:\nn1\n\nn2:\nn2"
        })
        .await;

        assert_eq!(
            c.command("shutdown").await.unwrap(),
            "Shutting down the cluster manager."
        );
        tokio::time::timeout(Duration::from_secs(5), mgr)
            .await
            .unwrap()
            .unwrap();
    }
}
