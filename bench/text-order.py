#!/usr/bin/env python3
"""Link order of the spread daemon's code: writes and checks src/bin/spread.order.

The kernel maps a program's code 64 KiB around every page it faults in, so a daemon whose
start-up and idle ring code is spread through its 1.8 MB of text has nearly all of it resident.
The release build (build.rs) hands lld this file with --symbol-ordering-file: the functions a
ring of daemons runs come first, in one block, and the rest (error paths, other tools' code,
std's backtrace printer) after it, so they stay on disk. docs/performance.md has the figures.

  bench/text-order.py generate   # needs root, ip, unshare, valgrind; about half a minute
  bench/text-order.py check [target/release/spread]

generate runs target/release/spread in network namespaces, every daemon under valgrind's
callgrind: a ring of 3 that forms, answers a client and falls idle, one daemon alone on
loopback that does the same (what an idle daemon has touched), and a ring of 3 that also
floods, times round trips, serves its metrics and restarts a daemon. The functions the idle
runs executed come first, busiest first, then those only the busy one executed; only names
the binary defines are kept. Symbol names carry crate hashes, which
change with the compiler and with Cargo.lock: `check` (run by CI on the release build) fails
when too few listed names are left in the binary or the block is not at the start of .text,
and `generate` on the new build (`cargo build --release --bin spread` first) mends it.
"""

import argparse
import collections
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER = os.path.join(ROOT, "src", "bin", "spread.order")
# A name LLVM made unique in one build (`foo.1742`): kept while it matches, not counted by check.
LOCAL_SUFFIX = re.compile(r"\.\d+$")
# check: at least this share of the listed (unsuffixed) names must be in the binary.
MIN_PRESENT = 0.9


def ring_compare():
    spec = importlib.util.spec_from_file_location("ring_compare", os.path.join(HERE, "ring-compare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions(binary):
    """Function symbols the binary defines: name -> (address, size)."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return syms


def text_section(binary):
    """(address, size) of .text."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m:
            return int(m.group(1), 16), int(m.group(2), 16)
    raise RuntimeError(f"{binary}: no .text section")


def self_costs(path):
    """Instructions each function executed itself, from one callgrind output file (its name
    compression, `calls=` lines followed by the call's inclusive cost, which is skipped)."""
    names, costs = {}, collections.Counter()
    current, skip_next = None, False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if m.group(1) == "fn":
                    current = names.get(m.group(2))
                    costs[current] += 0
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if current is not None and len(parts) >= 2 and parts[1].isdigit():
                    costs[current] += int(parts[1])
    return costs


def profile(rc, binary, bench, workdir, net, traffic, lone=False):
    """Self costs summed over the daemons of one ring run under callgrind: 3 daemons, or one
    alone on loopback (`lone`)."""
    command = f"valgrind --tool=callgrind --demangle=no --callgrind-out-file=/callgrind.%p {binary}"
    ring = rc.Ring("mbus", command, 1 if lone else 3, workdir, net)
    ring.loopback = lone
    # The metrics endpoint is served (and scraped below) in the run with traffic.
    ring.metrics = traffic
    try:
        ring.start()
        rc.wait_ready(ring, bench, 300)
        time.sleep(3)
        if traffic:
            readers = f"{ring.daemon(1)},{ring.daemon(2)}"
            for size, count in ((1000, 300), (100_000, 20)):
                ring.run(0, [bench, "-s", ring.daemon(0), "-m", str(count), "-b", str(size),
                             "--reader", readers, "--timeout", "300"], 330)
            for service in ("agreed", "safe"):
                for echo in (1, 0):
                    ring.run(0, [bench, "--latency", "-s", ring.daemon(0), "--echo", ring.daemon(echo),
                                 "-m", "50", "-b", "100", "--service", service, "--timeout", "300"], 330)
            # A member leaves and comes back: the ring shrinks and merges again.
            ring.procs[2].terminate()
            ring.procs[2].wait(timeout=120)
            ring.procs[2] = ring.spawn(2)
            time.sleep(10)
            rc.wait_ready(ring, bench, 300)
            ring.counters("spread_")
    finally:
        # callgrind writes its file when the daemon exits: give it time.
        ring.stop(grace=120)
    costs = collections.Counter()
    for d in ring.dirs:
        for name in os.listdir(os.path.join(d, "rt")):
            if name.startswith("callgrind."):
                costs.update(self_costs(os.path.join(d, "rt", name)))
    if not costs:
        raise RuntimeError("callgrind wrote no profile (is valgrind installed?)")
    return costs


def generate(opts):
    for tool in ("valgrind", "ip", "unshare", "nm", "readelf"):
        if not shutil.which(tool):
            sys.exit(f"text-order: needs {tool}")
    if os.geteuid() != 0:
        sys.exit("text-order: needs root (network namespaces)")
    rc = ring_compare()
    syms = functions(opts.ours)
    workdir = tempfile.mkdtemp(prefix="mbus-text-order-", dir="/var/tmp")
    try:
        print("text-order: a ring forming and falling idle, under callgrind", file=sys.stderr)
        idle = profile(rc, opts.ours, opts.bench, workdir, 201, traffic=False)
        print("text-order: one daemon alone on loopback (the packaged spread.conf's segment)",
              file=sys.stderr)
        idle.update(profile(rc, opts.ours, opts.bench, workdir, 203, traffic=False, lone=True))
        print("text-order: a ring with traffic and a restart, under callgrind", file=sys.stderr)
        busy = profile(rc, opts.ours, opts.bench, workdir, 202, traffic=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    first = [n for n, _ in idle.most_common() if n in syms]
    seen = set(first)
    then = [n for n, _ in busy.most_common() if n in syms and n not in seen]
    size = lambda names: sum(syms[n][1] for n in names) // 1024
    with open(ORDER, "w") as f:
        f.write("# Generated by bench/text-order.py from target/release/spread: lld's\n"
                "# --symbol-ordering-file for the spread daemon (build.rs). Do not edit.\n"
                f"# {len(first)} functions daemons ran up to idle ({size(first)} KB), then\n"
                f"# {len(then)} more that traffic and a restart ran ({size(then)} KB).\n")
        f.write("".join(n + "\n" for n in first + then))
    print(f"text-order: wrote {ORDER}: {len(first)} + {len(then)} functions, "
          f"{size(first)} + {size(then)} KB; rebuild (cargo build --release --bin spread) and "
          "run `bench/text-order.py check`", file=sys.stderr)


def check(opts):
    """Fails when the order file no longer matches the binary or was not applied."""
    with open(ORDER) as f:
        listed = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    syms = functions(opts.binary)
    stable = [n for n in listed if not LOCAL_SUFFIX.search(n)]
    present = [n for n in stable if n in syms]
    share = len(present) / max(1, len(stable))
    placed = [syms[n] for n in listed if n in syms]
    start, _ = text_section(opts.binary)
    end = max((a + s for a, s in placed), default=start)
    total = sum(s for _, s in placed)
    print(f"text order: {len(present)} of {len(stable)} listed functions in {opts.binary} "
          f"({share:.0%}); they fill {total // 1024} KB and end {(end - start) // 1024} KB into .text")
    problems = []
    if share < MIN_PRESENT:
        problems.append(f"src/bin/spread.order is stale (fewer than {MIN_PRESENT:.0%} of its names are in "
                        "the binary: a new compiler or Cargo.lock?)")
    # Functions are aligned (16 or 64 bytes): allow a little room beyond their sizes.
    if end - start > total * 1.1 + 65536:
        problems.append("the listed functions are not at the start of .text (was the order applied? "
                        "build.rs passes it to lld only)")
    if problems:
        sys.exit("text-order: " + "; ".join(problems) +
                 ". Mend it: cargo build --release --bin spread && sudo bench/text-order.py generate "
                 "&& cargo build --release --bin spread")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="profile a ring under callgrind and write the order")
    gen.add_argument("--ours", default=os.path.join(ROOT, "target/release/spread"))
    gen.add_argument("--bench", default=os.path.join(ROOT, "target/release/mbus-bench"))
    chk = sub.add_parser("check", help="check that the order matches the binary and was applied")
    chk.add_argument("binary", nargs="?", default=os.path.join(ROOT, "target/release/spread"))
    opts = ap.parse_args()
    if opts.command == "generate":
        generate(opts)
    else:
        check(opts)


if __name__ == "__main__":
    main()
