//! Live reconfiguration: 5.0.1's RELOAD (fact sheet §11; `Prot_initiate_conf_reload`,
//! `Conf_reload_initiate`), decided here so the simulator runs the same rules as production.
//! The shell only reads and parses the file and hands the [`Config`] in
//! ([`Daemon::reload`]); the simulator hands ring settings in ([`Daemon::reconfigure`]).
//!
//! # What 5.0.1 does, and what this does
//!
//! * A RELOAD control packet (or, an mbus addition, `SIGHUP` in the shell) makes the daemon
//!   re-read its configuration file. In OP it is applied at once; in any other membership
//!   state it waits until the daemon is back in OP (5.0.1 `Prot_Need_Conf_Reload`, re-queued
//!   by `Shift_to_op`).
//! * This daemon must still be in the file with the same name, address, port, id, interface
//!   block and segment addresses; otherwise 5.0.1 logs "My daemon parameters have changed!
//!   Exiting!" and exits ([`ReloadOutcome::Exit`], [`super::MonitorOutput::Exit`]).
//! * Daemons added or removed only: the new settings (daemon list, segments, configuration
//!   hash, windows) take effect and the daemon declares a token loss at once (5.0.1 queues
//!   `Memb_token_loss_event` with a zero timeout): the ring re-forms with the new hash, so
//!   daemons that reloaded find each other and a removed daemon (which exits on its own
//!   reload) or a daemon still on the old file is no longer heard.
//! * A daemon present in both files whose name/id pairing, address, interface block or
//!   segment addresses changed: 5.0.1 "partitions down to singleton" — every configured
//!   daemon is put in its own partition component (a monitor PARTITION is refused meanwhile),
//!   the token loss forms a singleton ring, and once that singleton ring is installed the
//!   partition is cleared and a lookup for new members is sent at once, so the ring re-merges
//!   ([`ReloadStats::singletons`]).
//! * The ring protocol after a reload is 5.0.1's, surprise included: 5.0.1 keeps one global
//!   "accelerated" value that its parser sets only from an explicit `AcceleratedRing` line and
//!   that `Memb_init` sets at start-up, when the file has no such line, to "not wide area"
//!   (true for one segment). The start-up hash was computed before that (so a default file
//!   says "Original Ring", fact sheet §9/§10), but a reload computes the hash, and `FC_init`
//!   the protocol, from the value in force: a default one-segment ring reloaded by 5.0.1 runs
//!   the **Accelerated Ring** and its hash says so (observed: a 4-daemon file without the line
//!   reloaded by 5.0.1 hashes to 0x1358a689 = "Accelerated Ring", not 0x90e6412f). A daemon
//!   here does the same, so a mixed ring stays one ring after a reload.
//! * Windows (`Window`, `PersonalWindow`, `AcceleratedWindow`) come from the new file, as
//!   5.0.1's `FC_init` re-reads them (a monitor FC setting is forgotten). The membership
//!   timeouts are applied too — **an mbus difference**: 5.0.1 keeps the timeouts it started
//!   with until restarted.
//! * Group state survives: group members keep their groups; their daemons' positions are
//!   re-mapped to the new configuration order (5.0.1 `G_signal_conf_reload`). Sessions are
//!   untouched. Client limits and authentication are not re-read (as 5.0.1).
//! * A file that does not parse never reaches the core: the shell logs its
//!   `path:line:col:` line and the running configuration stays (5.0.1 exits instead).
//!
//! # Where this differs from 5.0.1 (deliberately)
//!
//! * RELOAD is obeyed only with `DangerousMonitor = yes` ([`super::monitor`]); 5.0.1 obeys it
//!   whatever `DangerousMonitor` says.
//! * A bad file is refused and the daemon keeps running (5.0.1's parser exits).
//! * The membership timeouts are re-read (5.0.1 keeps its start-up timeouts).
//! * 5.0.1 exits when a reload gives its segment a second daemon while it started alone in
//!   it ("Bcast now needed … sockets need to be reestablished"); this daemon goes on (its
//!   sockets do not depend on it).
//! * Packets of the ring being left whose original sender the new file removed are still
//!   recovered in EVS. 5.0.1's protocol layer drops a packet whose originator is not
//!   configured ("unknown proc"); with that rule the simulator's survivors never finished EVS
//!   when a removed daemon's packet was missing at one of them (not observed with 5.0.1).
//! * The file is read when the request arrives, not when OP is reached.
//! * `spmonitor` sends each RELOAD twice; 5.0.1 drops the second by its old hash, this daemon
//!   by remembering that a reload is under way.

use tracing::{info, warn};

use super::{Daemon, MonitorConfig, MonitorOutput, Output, Settings};
use crate::config::{Config, Host, HostId};
use crate::ring::{self, DaemonId, RingConfig, Timer};
use crate::time::Instant;

/// What [`Daemon::reload`] did with a new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied now (in OP): a token loss was declared; `singleton`: a daemon's parameters
    /// changed, so the ring first shrinks to this daemon alone, then re-merges.
    Applied {
        /// Partitioned down to a singleton ring first.
        singleton: bool,
    },
    /// Not in OP: applied when the daemon is next in OP (as 5.0.1).
    Deferred,
    /// This daemon is no longer in the file, or its own parameters changed: 5.0.1 exits; a
    /// [`MonitorOutput::Exit`] was queued. The text says why.
    Exit(String),
}

/// Counters of live reconfiguration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// New configurations handed in ([`Daemon::reload`], [`Daemon::reconfigure`]).
    pub requests: u64,
    /// Configurations applied (a token loss declared).
    pub applied: u64,
    /// Configurations that waited for OP.
    pub deferred: u64,
    /// Applied configurations that partitioned this daemon down to a singleton ring first.
    pub singletons: u64,
    /// Singleton rings installed after which the partition was cleared and a lookup sent.
    pub remerges: u64,
    /// New configurations that made this daemon exit.
    pub exits: u64,
}

/// A reload waiting for OP, or the singleton state after one.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// Settings to apply when next in OP, and whether they need a singleton ring first.
    pending: Option<(Box<Settings>, bool)>,
    /// 5.0.1's `Conf_reload_singleton_state`: partitioned alone until a singleton ring is
    /// installed.
    pub(crate) singleton: bool,
    /// The parsed configuration in force, when the daemon was built from one.
    pub(crate) config: Option<Box<Config>>,
    /// 5.0.1's global accelerated-ring value (see the module documentation).
    accelerated: Option<bool>,
    /// A RELOAD was handed to the shell and not yet answered with a configuration (a second
    /// copy — spmonitor sends two — is not obeyed twice; 5.0.1 drops it by its old hash).
    pub(crate) requested: bool,
    pub(crate) stats: ReloadStats,
}

/// Why 5.0.1 would exit on this new configuration (`Some(reason)`), judging this daemon's
/// own entry (`Conf_daemon_changed` with `me`).
fn own_change(old: &Config, new: &Config, name: &str) -> Option<String> {
    let Some((oid, o)) = old.find_host(name) else {
        return Some(format!("'{name}' is not in the running configuration"));
    };
    let Some((nid, n)) = new.find_host(name) else {
        return Some(format!(
            "my daemon '{name}' is no longer in the configuration"
        ));
    };
    daemon_changed(old, oid, o, new, nid, n).map(|what| format!("my {what} changed"))
}

/// 5.0.1's `Conf_daemon_changed`: what of a daemon in both files differs (name, address,
/// port, id, interface block, its segment's addresses).
fn daemon_changed(
    old: &Config,
    oid: HostId,
    o: &Host,
    new: &Config,
    nid: HostId,
    n: &Host,
) -> Option<&'static str> {
    let port = |c: &Config, id: HostId| c.segments.get(id.segment).map(|s| s.port);
    if o.name != n.name || o.addr != n.addr || o.vid != n.vid || port(old, oid) != port(new, nid) {
        return Some("daemon parameters (name, address, port or id)");
    }
    if o.interfaces != n.interfaces {
        return Some("daemon interface specs");
    }
    let addrs = |c: &Config, id: HostId| c.segments.get(id.segment).map(|s| s.addrs.clone());
    if addrs(old, oid) != addrs(new, nid) {
        return Some("segment parameters");
    }
    None
}

/// 5.0.1's need for a singleton ring: a daemon of the new file that matches an old daemon
/// by name or id, but not the same one, or whose parameters changed.
fn needs_singleton(old: &Config, new: &Config) -> Option<String> {
    for (nid, n) in new.hosts() {
        let by_name = old.find_host(&n.name);
        let by_id = old.find_vid(n.vid);
        match (by_name, by_id) {
            (None, None) => {
                info!(name = %n.name, addr = %n.addr.ip, id = n.vid, "reload: added new daemon");
            }
            (Some((a, _)), Some((b, _))) if a != b => {
                return Some(format!(
                    "daemon identity '{}' (id {}) maps to two different old daemons",
                    n.name, n.vid
                ));
            }
            (Some((oid, o)), _) | (None, Some((oid, o))) => {
                if let Some(what) = daemon_changed(old, oid, o, new, nid, n) {
                    return Some(format!("'{}': a {what} changed", n.name));
                }
            }
        }
    }
    None
}

impl Daemon {
    /// This daemon's name (how [`Daemon::reload`] finds it in a new file).
    pub fn name(&self) -> &str {
        self.clients.name()
    }

    /// Counters of live reconfiguration.
    pub fn reload_stats(&self) -> ReloadStats {
        self.reload.stats
    }

    /// True while this daemon is partitioned alone after a reload that changed a daemon's
    /// parameters (5.0.1's reload singleton state).
    pub fn reload_singleton(&self) -> bool {
        self.reload.singleton
    }

    /// Remembers the parsed configuration this daemon runs (what [`Daemon::reload`]
    /// compares a new file with). [`Daemon::from_config`] does it; a shell that builds the
    /// daemon from [`Settings::from_config`] calls it.
    pub fn set_config(&mut self, config: &Config) {
        // 5.0.1's Memb_init: without an explicit line, "not wide area" from now on.
        let r = &mut self.reload;
        r.accelerated.get_or_insert(
            config
                .options
                .accelerated_ring
                .unwrap_or(!config.wide_area()),
        );
        r.config = Some(Box::new(config.clone()));
    }

    /// The shell could not hand a configuration in after a RELOAD (no file, or a file that
    /// does not parse): the running configuration stays and the next RELOAD is obeyed again.
    pub fn reload_failed(&mut self) {
        self.reload.requested = false;
    }

    /// A new configuration file for this running daemon (its `RELOAD`): checks it as 5.0.1
    /// does and applies it now in OP, else when next in OP. `clock_secs` is the wall clock.
    /// This daemon is found in it by its name. See the module documentation.
    pub fn reload(&mut self, now: Instant, config: &Config, clock_secs: u32) -> ReloadOutcome {
        self.reload.stats.requests += 1;
        self.reload.requested = false;
        let name = self.clients.name().to_owned();
        let old = self.reload.config.as_deref();
        let verdict = match old {
            Some(old) => own_change(old, config, &name),
            None => config
                .find_host(&name)
                .is_none()
                .then(|| format!("my daemon '{name}' is no longer in the configuration")),
        };
        if let Some(why) = verdict {
            self.reload.stats.exits += 1;
            warn!("configuration reload: {why}! Exiting!");
            self.out.push_back(Output::Monitor(MonitorOutput::Exit));
            return ReloadOutcome::Exit(why);
        }
        let singleton = old.and_then(|old| needs_singleton(old, config));
        if let Some(why) = &singleton {
            warn!("configuration reload: {why}! Partitioning down to singleton!");
        }
        let Some((me, _)) = config.find_host(&name) else {
            return ReloadOutcome::Exit(String::new());
        };
        // The protocol and hash from 5.0.1's global accelerated value (module documentation).
        let accelerated = config
            .options
            .accelerated_ring
            .or(self.reload.accelerated)
            .unwrap_or(false);
        self.reload.accelerated = Some(accelerated);
        let mut effective = config.clone();
        effective.options.accelerated_ring = Some(accelerated);
        let settings = Settings::from_config(&effective, me, clock_secs);
        self.reload.config = Some(Box::new(config.clone()));
        self.reconfigure(now, settings, singleton.is_some())
    }

    /// New ring, monitor and network settings for this running daemon (the client limits of
    /// `settings` are not used): applied now in OP (a token loss is declared), else when next
    /// in OP. `singleton`: partition down to a singleton ring first, then re-merge.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        settings: Settings,
        singleton: bool,
    ) -> ReloadOutcome {
        self.reload.requested = false;
        if self.engine.state() != ring::State::Op {
            info!("configuration reload deferred until the membership is operational");
            self.reload.stats.deferred += 1;
            self.reload.pending = Some((Box::new(settings), singleton));
            return ReloadOutcome::Deferred;
        }
        self.apply_reload(now, settings, singleton);
        self.pump(now);
        ReloadOutcome::Applied { singleton }
    }

    /// A reload waiting for OP is applied once the engine is there (called after every
    /// pump).
    pub(crate) fn reload_if_pending(&mut self, now: Instant) {
        if self.engine.state() != ring::State::Op {
            return;
        }
        if let Some((settings, singleton)) = self.reload.pending.take() {
            info!("applying the deferred configuration reload");
            self.apply_reload(now, *settings, singleton);
        }
    }

    /// The regular configuration `members` was installed: leaves the reload singleton state
    /// once it is this daemon alone (clears the partition, looks for new members at once).
    pub(crate) fn reload_on_install(&mut self, now: Instant, members: &[DaemonId]) {
        if self.reload.singleton && members == [self.engine.id()] {
            self.reload.singleton = false;
            self.reload.stats.remerges += 1;
            self.monitor.clear_partition();
            // 5.0.1 queues Memb_lookup_new_members_event at once.
            self.engine.arm(Timer::Lookup, now);
            info!("configuration reload: singleton ring installed; partition cleared, looking for the others");
        }
    }

    fn apply_reload(&mut self, now: Instant, settings: Settings, singleton: bool) {
        let Settings {
            ring: new_ring,
            monitor: new_monitor,
            topology: new_topology,
            ..
        } = settings;
        self.reload.stats.applied += 1;
        let old_hash = self.engine.cfg.conf_hash;
        info!(
            daemons = new_ring.daemons.len(),
            old_hash = format_args!("{old_hash:#010x}"),
            new_hash = format_args!("{:#010x}", new_ring.conf_hash),
            singleton,
            "configuration reloaded; re-forming the ring"
        );
        self.clients.set_daemons(new_ring.daemons.clone());
        self.topology = self.topology.reconfigured(new_topology);
        self.monitor
            .reconfigure(reconfigured_monitor(new_monitor, &new_ring));
        if singleton {
            self.reload.stats.singletons += 1;
            self.monitor.partition_alone();
            self.reload.singleton = true;
        }
        self.engine.reconfigure(now, new_ring);
    }
}

/// The monitor settings of a reload (the ring's `me` is authoritative).
fn reconfigured_monitor(mut m: MonitorConfig, ring: &RingConfig) -> MonitorConfig {
    m.me = ring.me;
    m
}

impl ring::Engine {
    /// New ring settings in OP (5.0.1 `Prot_initiate_conf_reload`): daemons, segments, hash,
    /// windows and timeouts from `cfg`, then a token loss at once (a zero-delay timer, as
    /// 5.0.1 queues it), so the ring re-forms under the new configuration.
    pub(crate) fn reconfigure(&mut self, now: Instant, cfg: RingConfig) {
        self.cfg = cfg;
        self.arm(Timer::TokenLoss, now);
    }
}
