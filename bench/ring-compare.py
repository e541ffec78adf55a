#!/usr/bin/env python3
"""Side-by-side ring benchmark: rings of real Spread 5.0.1 daemons and of mbus daemons, built
in network namespaces on this machine, measured with the same client (mbus-bench) in one run.

For each ring size (--daemons 3, or 2,3,5,8) and each round, the kinds alternate (real, ours,
real, ours, ...). For every ring:
  * flood: a sender on d1 (window 200 of its own messages in flight, as spflooder), one
    counting reader on every other daemon; seconds for --messages × each --sizes;
  * CPU of all daemons per message (utime+stime from /proc, per flood);
  * latency: ping d1 <-> echo d2 (and both on d1), AGREED and SAFE, --pings × 100 bytes,
    p50/p99 in microseconds; then --paced round trips d1 <-> d2 with a 5 ms pause after each
    (a request/response load at a low rate: the ring falls idle in between);
  * peak RSS (VmHWM) of d1 after the runs, and its RSS when idle (before them).
The table shows medians over the rounds and the ratio mbus/real.

The real daemon is never built here: give its path in MBUS_REAL_SPREAD (or --real). Without it
only our ring is measured (that is what CI's smoke run does). Needs root (ip netns, unshare).

  bench/ring-compare.py                                  # 3 daemons, 5 rounds, our ring only
  MBUS_REAL_SPREAD=/opt/sp501/sbin/spread bench/ring-compare.py --daemons 2,3,5,8 --rounds 3
  bench/ring-compare.py --quick --json out.json          # a short smoke run
  bench/ring-compare.py --ours "env MBUS_WORKER_THREADS=2 target/release/spread"
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 4803
TICK = os.sysconf("SC_CLK_TCK")


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


class Ring:
    """N daemons of one kind on one bridged segment 10.77.<net>.0/24, each in its own network
    namespace with its own /tmp (a bind mount of its work directory)."""

    def __init__(self, kind, binary, n, workdir, net):
        self.kind, self.binary, self.n, self.net = kind, binary, n, net
        self.tag = f"mbb{os.getpid() % 10000}"
        self.hub = f"{self.tag}h"
        self.names = [f"{self.tag}d{i}" for i in range(n)]
        self.dirs = [os.path.join(workdir, f"{kind}{n}-{i}") for i in range(n)]
        self.procs = []
        self.metrics = False
        # A lone daemon on its namespace's loopback, with the packaged spread.conf's segment
        # (bench/text-order.py); its address is then 127.0.0.1.
        self.loopback = False

    def counters(self, pattern):
        """Our daemons' metrics lines whose name contains one of `pattern`'s words."""
        get = ("import urllib.request as u;"
               "print(u.urlopen('http://127.0.0.1:9803/metrics', timeout=5).read().decode())")
        lines = []
        for i in range(self.n):
            text = self.run(i, ["python3", "-c", get], 10)
            lines += [f"d{i + 1} {l}" for l in text.splitlines()
                      if not l.startswith("#") and any(w in l for w in pattern.split())]
        return lines

    def addr(self, i):
        return "127.0.0.1" if self.loopback else f"10.77.{self.net}.{i + 1}"

    def daemon(self, i):
        return f"{PORT}@{self.addr(i)}"

    def start(self):
        sh("ip", "netns", "add", self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        hosts = "".join(f" d{i + 1} {self.addr(i)}\n" for i in range(self.n))
        segment = "127.0.0.255" if self.loopback else f"10.77.{self.net}.255"
        conf = (
            f"Spread_Segment {segment}:{PORT} {{\n{hosts}}}\n"
            "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n"
            "SocketPortReuse = ON\n"
        )
        for i, ns in enumerate(self.names):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", self.hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "brd", "+", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            d = self.dirs[i]
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(os.path.join(d, "rt"))
            os.chmod(os.path.join(d, "rt"), 0o777)
            with open(os.path.join(d, "spread.conf"), "w") as f:
                f.write(conf)
        self.procs = [self.spawn(i) for i in range(self.n)]

    def spawn(self, i):
        """Starts daemon i in its namespace, with its work directory as /tmp; its process (the
        daemon itself: every wrapper execs). A restarted daemon appends to its log."""
        log = open(os.path.join(self.dirs[i], "daemon.log"), "a")
        extra = " --metrics 127.0.0.1:9803" if self.kind == "mbus" and self.metrics else ""
        cmd = (
            f"mount --bind {self.dirs[i]} /tmp && exec stdbuf -oL {self.binary} "
            f"-n d{i + 1} -c /tmp/spread.conf{extra}"
        )
        return subprocess.Popen(
            ["ip", "netns", "exec", self.names[i], "unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
            stdout=log, stderr=subprocess.STDOUT)

    def run(self, i, args, timeout):
        """Runs a command inside daemon i's namespace; its standard output."""
        out = subprocess.run(["ip", "netns", "exec", self.names[i]] + args, capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
        return out.stdout

    def cpu_seconds(self):
        """CPU time of all daemons: the scheduler's nanoseconds per thread (/proc/PID/task/*/
        schedstat), or, where that is missing, utime+stime in clock ticks (10 ms steps: a short
        flood of a fast daemon can read 0)."""
        total = 0.0
        for p in self.procs:
            try:
                tasks = os.listdir(f"/proc/{p.pid}/task")
                ns = 0
                for t in tasks:
                    with open(f"/proc/{p.pid}/task/{t}/schedstat") as f:
                        ns += int(f.read().split()[0])
                total += ns / 1e9
            except (OSError, ValueError, IndexError):
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICK
        return total

    def status_kb(self, i, key):
        with open(f"/proc/{self.procs[i].pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self, grace=3):
        """SIGTERM to every daemon, SIGKILL to those still running after `grace` seconds; then
        the namespaces go."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in self.names + [self.hub]:
            sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)

    def alarms(self):
        """Lines of the daemons' logs that report an alarm (a real 5.0.1 daemon's death)."""
        found = []
        for d in self.dirs:
            with open(os.path.join(d, "daemon.log"), errors="replace") as f:
                found += [line.strip() for line in f if "Alarm" in line]
        return found


def wait_ready(ring, bench, timeout):
    """Until a session on d1 sees a message it multicasts (the ring is operational)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ring.run(0, [bench, "-s", ring.daemon(0), "-m", "10", "-b", "10", "--timeout", "5"], 10)
            return
        except (RuntimeError, subprocess.TimeoutExpired):
            time.sleep(0.5)
    raise RuntimeError(f"{ring.kind} ring of {ring.n} did not come up in {timeout} s")


def measure(ring, bench, opts):
    fig = {}
    wait_ready(ring, bench, 30)
    # Let the ring settle: every daemon in one ring (a lone 5.0.1 daemon accepts clients too).
    time.sleep(opts.settle)
    fig["idle RSS d1 (MB)"] = ring.status_kb(0, "VmRSS") / 1024
    readers = ",".join(ring.daemon(i) for i in range(1, ring.n))
    for size in opts.sizes:
        msgs = opts.messages if size <= 10_000 else max(1, opts.messages // 10)
        before = ring.cpu_seconds()
        args = [bench, "-s", ring.daemon(0), "-m", str(msgs), "-b", str(size), "--json", "--timeout", "300"]
        if readers:
            args += ["--reader", readers]
        out = json.loads(ring.run(0, args, 330))
        if out["failed"]:
            raise RuntimeError(f"flood failed on {out['failed']}")
        f = out["flood"][0]
        cpu = ring.cpu_seconds() - before
        label = f"{size // 1000} KB" if size >= 1000 else f"{size} B"
        fig[f"flood {label} × {msgs} (s)"] = f["seconds"]
        fig[f"CPU/msg {label}, all daemons (µs)"] = cpu / msgs * 1e6
    if opts.pings:
        pairs = [("d1↔d2", 1)] if ring.n > 1 else []
        pairs.append(("d1↔d1", 0))
        for service in ("agreed", "safe"):
            for name, echo in pairs:
                args = [bench, "--latency", "-s", ring.daemon(0), "--echo", ring.daemon(echo), "-m",
                        str(opts.pings), "-b", "100", "--service", service, "--json", "--timeout", "120"]
                out = json.loads(ring.run(0, args, 150))
                if out["failed"]:
                    raise RuntimeError(f"latency failed on {out['failed']}")
                lat = out["latency"][0]
                fig[f"RTT {service.upper()} {name} p50 (µs)"] = lat["p50_us"]
                fig[f"RTT {service.upper()} {name} p99 (µs)"] = lat["p99_us"]
        if opts.paced and ring.n > 1:
            # Request/response at a low rate: the ring falls idle (its leader holds the token)
            # between round trips.
            for service in ("agreed", "safe"):
                args = [bench, "--latency", "-s", ring.daemon(0), "--echo", ring.daemon(1), "-m",
                        str(opts.paced), "-b", "100", "--service", service, "--interval", "5000",
                        "--json", "--timeout", "120"]
                out = json.loads(ring.run(0, args, 150))
                if out["failed"]:
                    raise RuntimeError(f"paced latency failed on {out['failed']}")
                lat = out["latency"][0]
                fig[f"RTT {service.upper()} d1↔d2 paced 5 ms p50 (µs)"] = lat["p50_us"]
                fig[f"RTT {service.upper()} d1↔d2 paced 5 ms p99 (µs)"] = lat["p99_us"]
    fig["peak RSS d1 (MB)"] = ring.status_kb(0, "VmHWM") / 1024
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemons", default="3", help="ring sizes, comma separated (default 3)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=20000, help="1 KB messages per flood (100 KB: a tenth)")
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--paced", type=int, default=300,
                    help="round trips d1<->d2 with a 5 ms pause after each (0: none)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait after the ring answers")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target/release/spread"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/mbus-bench"))
    ap.add_argument("--real", default=os.environ.get("MBUS_REAL_SPREAD", ""))
    ap.add_argument("--quick", action="store_true", help="smoke: 2 daemons, 1 round, small counts")
    ap.add_argument("--json", help="also write every figure of every round to this file")
    ap.add_argument("--show-metrics", metavar="WORDS",
                    help="after each round of our ring, print the metrics of every daemon whose "
                         "name contains one of these words (e.g. 'reply rotation retrans')")
    opts = ap.parse_args()
    if opts.quick:
        opts.daemons, opts.rounds, opts.messages, opts.pings, opts.settle = "2", 1, 200, 50, 0.5
        opts.paced = 10
        opts.sizes = "1000,20000"
    opts.sizes = [int(s) for s in opts.sizes.split(",")]
    sizes = [int(s) for s in opts.daemons.split(",")]
    kinds = [("real", opts.real)] if opts.real else []
    kinds.append(("mbus", opts.ours))
    for _, path in kinds + [("bench", opts.bench)]:
        # A daemon may be given as a command (`env VAR=1 /path/spread`): check its program.
        path = path.split()[-1] if path.split() else path
        if not os.access(path, os.X_OK):
            sys.exit(f"ring-compare: {path} is not an executable (build with cargo build --release)")
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        sys.exit("ring-compare: needs root, ip (iproute2) and unshare (util-linux)")

    workdir = tempfile.mkdtemp(prefix="mbus-ring-compare-", dir="/var/tmp")
    results = {}  # (n, kind) -> list of figure dicts
    failures = []
    net = 0
    try:
        for n in sizes:
            for r in range(opts.rounds):
                for kind, path in kinds:
                    net = (net + 1) % 250
                    ring = Ring(kind, path, n, workdir, net)
                    ring.metrics = bool(opts.show_metrics)
                    try:
                        ring.start()
                        fig = measure(ring, opts.bench, opts)
                        if ring.metrics and kind == "mbus":
                            for line in ring.counters(opts.show_metrics):
                                print(f"    {line}", file=sys.stderr, flush=True)
                        if not ring.alive():
                            raise RuntimeError("a daemon died during the run")
                        if ring.alarms():
                            raise RuntimeError(f"alarm in a daemon log: {ring.alarms()[0]}")
                        results.setdefault((n, kind), []).append(fig)
                        print(f"  {kind} ring of {n}, round {r + 1}: done", file=sys.stderr, flush=True)
                    except Exception as e:  # noqa: BLE001 - reported and counted below
                        failures.append(f"{kind} ring of {n}, round {r + 1}: {e}")
                        print(f"  {failures[-1]}", file=sys.stderr, flush=True)
                    finally:
                        ring.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for n in sizes:
        print(f"\n{n} daemons, medians of {opts.rounds} round(s)")
        real = results.get((n, "real"), [])
        ours = results.get((n, "mbus"), [])
        keys = list((ours or real or [{}])[0].keys())
        width = max([len(k) for k in keys] + [6])
        print(f"{'figure':<{width}}  {'real 5.0.1':>10}  {'mbus':>10}  {'mbus/real':>9}")
        for k in keys:
            med = lambda rows: statistics.median([row[k] for row in rows if k in row]) if rows else None
            a, b = med(real), med(ours)
            cell = lambda v: f"{v:>10.3f}" if v is not None and v < 10 else (f"{v:>10.0f}" if v is not None else f"{'-':>10}")
            ratio = f"{b / a:>9.2f}" if a and b is not None else f"{'-':>9}"
            print(f"{k:<{width}}  {cell(a)}  {cell(b)}  {ratio}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({f"{kind} {n}": rows for (n, kind), rows in results.items()}, f, indent=1)
    if failures:
        print("\nfailed runs:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
