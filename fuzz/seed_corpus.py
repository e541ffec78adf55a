#!/usr/bin/env python3
"""Split the golden captures into per-frame / per-packet seed files for the fuzz targets.

Usage (from the repository root):

    python3 fuzz/seed_corpus.py            # (re)write fuzz/corpus/<target>/cap-* from tests/data
    python3 fuzz/seed_corpus.py --check    # exit 1 if the committed seeds are out of date

Inputs are the repository's copies of the captures (tests/data/client/*.hex,
tests/data/daemon/*.hex) and `mbus.conf.example` if present. Only files whose name starts with
`cap-` are written or deleted; hand-written seeds and files libFuzzer added (sha1 names) are left
alone. The input format of every target is documented in `spread/src/fuzzing.rs` /
`src/fuzzing.rs`; this script must produce exactly that format:

* client_handshake   one handshake piece, prefixed by a selector byte
                     (0 hello, 1 auth list, 2 auth reply, 3 accept/reject; the rest of the
                     selector byte is ignored) - see `spread::fuzzing::client_handshake`.
* client_message     one complete client<->daemon message (48-byte header + groups + body),
                     as captured (little-endian) and byte-swapped to big-endian.
* client_stream      a chunk-size byte, then the concatenated bytes of one direction of one
                     connection after the handshake (fed to the framer in chunks).
* client_session     a script per capture file, see "script format" below: tag = kind |
                     (connection index << 3); kind 0 = the C> bytes, 1 = a D> line (the
                     client read what was sent), 2 = CX (the client closed).
* daemon_packet      one data-port datagram carrying messages (data packets, HURRY).
* token              one token-port datagram that is a regular token.
* membership         one ALIVE/JOIN/REFER datagram (data port) or FORM1/FORM2 token.
* groups             one GROUPS message (48-byte message header + body), reassembled.
* monitor            one STATUS/PARTITION/FC/RELOAD datagram (request or reply).
* ring_packet        every data-port / token-port datagram (the ring engine's 5.0.1 codec).
* daemon_stateful    a script of what daemon d1 (resp. e1) received, see below.
* spread_conf        configuration text from the capture headers (and mbus.conf.example).
* mbus_conf          the same texts, read for their `# Subcluster:` comments.
* accept             a selector byte (bit 0 token port, bits 1-2 the receiving daemon, bits 3-4
                     the sender's address, 3 = unknown), then one data/token-port datagram.
* client_receive     a length byte, the session's private group name (from the accept), then
                     what the daemon sent after the handshake (whole stream, and each message
                     alone, also byte-swapped) - see `mbus::fuzzing::client_receive`.
* node_stateful      a client_session script (sessions < 16, so tags < 0x80) between ring
                     records (tag | 0x80) that let the two nodes form a ring first; and the
                     daemon_stateful script of each daemon capture as ring records.
* group_exchange     each captured GROUPS body in a script: two local joins, a configuration
                     change to d1 + d2, the body as d2's last GROUPS message (then an empty one
                     naming d2's synced set), and the same body merged by `Groups::install` (record kinds of
                     `spread::fuzzing::group_exchange`).

Script format (client_session, daemon_stateful): a sequence of records
`[tag u8][len u16 little-endian][len bytes]`, kind = tag & 7, argument = tag >> 3.
daemon_stateful (see `spread::fuzzing::daemon_stateful`): what the first configured daemon
received, as kind 0 (data port) / 1 (token port) with the sender's configuration index as
argument, and kind 2 time advances (u16 LE milliseconds). The ring engine does not speak the
5.0.1 byte format yet, so these seeds are foreign packets to it; its own-format seeds
(`honest-*`) are written by the Rust test `write_ring_seeds` (see fuzz/README.md).
"""

import argparse
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# Seeds larger than this are cut (the tail of a 100 kB body teaches the fuzzer nothing).
MAX_SEED_LEN = 4096
# At most this many seeds of the same shape (target, type word, length) per capture file.
MAX_PER_SHAPE = 2

GROUPS_MESS = 0x00080000
FORM_BITS = 0x1000 | 0x2000
MEMB_BITS = 0x100 | 0x200 | 0x400
CONTROL_BITS = 0x0F000000
DATA_PORT, TOKEN_PORT = 4803, 4804


def unhex(text):
    """Decode capture hex with `{rep:HH*N}` run tokens."""
    out = bytearray()
    for part in re.split(r"(\{rep:[0-9a-f]{2}\*\d+\})", text.strip()):
        m = re.fullmatch(r"\{rep:([0-9a-f]{2})\*(\d+)\}", part)
        if m:
            out += bytes([int(m.group(1), 16)]) * int(m.group(2))
        else:
            out += bytes.fromhex(part.replace(" ", ""))
    return bytes(out)


class Seeds:
    """Collects seed files per target, deduplicated by content and capped by shape."""

    def __init__(self):
        self.files = {}  # target -> {name: bytes}
        self.seen = set()
        self.shapes = {}

    def add(self, target, name, data, shape=None):
        data = bytes(data[:MAX_SEED_LEN])
        key = (target, hashlib.sha1(data).hexdigest())
        if key in self.seen or not data:
            return
        if shape is not None:
            skey = (target, name.split("-")[0], shape)
            if self.shapes.get(skey, 0) >= MAX_PER_SHAPE:
                return
            self.shapes[skey] = self.shapes.get(skey, 0) + 1
        self.seen.add(key)
        self.files.setdefault(target, {})["cap-" + name] = data


def script_record(tag, payload):
    payload = payload[:0xFFFF]
    return bytes([tag]) + struct.pack("<H", len(payload)) + payload


# ------------------------------------------------------------------ client captures


def split_hello(buf):
    """Return (hello_bytes, version, rest) of a client->daemon stream."""
    if len(buf) < 2:
        return buf, 0, b""
    major, minor = struct.unpack("bb", buf[:2])
    version = major * 10000 + minor * 100
    pos = 2
    if version > 31400 and len(buf) > pos:
        version += struct.unpack("b", buf[pos : pos + 1])[0]
        pos += 1
    if version < 30100:
        return buf[:pos], version, b""
    if len(buf) < pos + 2:
        return buf, version, b""
    name_len = struct.unpack("b", buf[pos + 1 : pos + 2])[0]
    pos += 2 + max(0, min(name_len, 10))
    return buf[:pos], version, buf[pos:]


def split_messages(buf):
    """Cut a post-handshake stream into messages; a malformed tail is one last piece."""
    out = []
    while len(buf) >= 48:
        typ = struct.unpack("<I", buf[:4])[0]
        order = "<" if typ & 0x80000080 == 0x80000080 else ">"
        num_groups, _, data_len = struct.unpack(order + "iIi", buf[36:48])
        if not (0 <= num_groups <= 1000 and 0 <= data_len <= 1 << 20):
            break
        end = 48 + 32 * num_groups + data_len
        out.append(buf[:end])
        buf = buf[end:]
    if buf:
        out.append(buf)
    return out


def swap_message(msg):
    """Byte-swap the header of a little-endian message (as a big-endian host writes it)."""
    if len(msg) < 48:
        return None
    typ, = struct.unpack("<I", msg[:4])
    num_groups, hint, data_len = struct.unpack("<iIi", msg[36:48])
    if typ & 0x80000080 != 0x80000080:
        return None
    typ &= ~0x80000080 & 0xFFFFFFFF
    hint &= ~0x80000080 & 0xFFFFFFFF
    return (
        struct.pack(">I", typ)
        + msg[4:36]
        + struct.pack(">iIi", num_groups, hint, data_len)
        + msg[48:]
    )


def split_daemon_side(buf, version):
    """Handshake pieces the daemon sent: [(selector, bytes)], rest."""
    pieces = []
    if not buf:
        return pieces, b""
    if buf[0] >= 0x80:  # reject code instead of the auth list / accept
        return [(1, buf[:1]), (3, buf[:1])], buf[1:]
    if version >= 31600:
        n = buf[0]
        pieces.append((1, buf[: 1 + n]))
        buf = buf[1 + n :]
        if not buf:
            return pieces, b""
        if buf[0] >= 0x80:
            pieces.append((3, buf[:1]))
            return pieces, buf[1:]
    head = 4 if version >= 31500 else 3
    if len(buf) < head + 1:
        pieces.append((3, buf))
        return pieces, b""
    pg_len = buf[head]
    end = head + 1 + pg_len
    pieces.append((3, buf[:end]))
    return pieces, buf[end:]


def private_group(accept, version):
    """The private group name in an accept piece (empty for a reject)."""
    head = 4 if version >= 31500 else 3
    if len(accept) <= head or accept[0] >= 0x80:
        return b""
    return accept[head + 1 : head + 1 + accept[head]]


def receive_seed(me, stream):
    """client_receive input: length byte, private group, daemon->client bytes."""
    me = me[:32]
    return bytes([len(me)]) + me + stream


# Ring records (tag | 0x80) of node_stateful: 200 ms of time, repeated, so the nodes form a ring.
def idle(n):
    return script_record(0x80 | 2, struct.pack("<H", 200)) * n


def client_capture(path, seeds):
    stem = os.path.basename(path)[: -len(".hex")]
    conns = {}  # conn -> {"C": bytearray, "D": bytearray}
    script = []  # client_session records of the whole file, one session id per connection
    node_script = []  # the same with session ids below 16 (node_stateful)
    for line in open(path, encoding="utf-8"):
        parts = line.rstrip("\n").split(" ", 2)
        if parts[0] not in ("C>", "D>", "CX", "DX") or len(parts) < 2:
            continue
        conn = parts[1]
        c = conns.setdefault(conn, {"C": bytearray(), "D": bytearray(), "id": len(conns) % 32})
        sid = c["id"] << 3
        nid = (c["id"] % 16) << 3
        if parts[0] == "C>":
            data = unhex(parts[2])
            c["C"] += data
            script.append(script_record(sid | 0, data))
            node_script.append(script_record(nid | 0, data))
        elif parts[0] == "D>":
            c["D"] += unhex(parts[2])
            script.append(script_record(sid | 1, b""))  # the client read it
            node_script.append(script_record(nid | 1, b""))
        elif parts[0] == "CX":
            script.append(script_record(sid | 2, b""))
            node_script.append(script_record(nid | 2, b""))
    for conn, c in conns.items():
        tag = f"{stem}-{conn}"
        hello, version, c_rest = split_hello(bytes(c["C"]))
        seeds.add("client_handshake", f"{tag}-hello", b"\x00" + hello)
        d_pieces, d_rest = split_daemon_side(bytes(c["D"]), version)
        me = b""
        for sel, piece in d_pieces:
            seeds.add("client_handshake", f"{tag}-{sel}", bytes([sel]) + piece)
            if sel == 3:
                me = private_group(piece, version)
        if d_rest:
            seeds.add("client_receive", f"{tag}", receive_seed(me, d_rest))
            for i, msg in enumerate(split_messages(d_rest)):
                shape = (msg[:4], len(msg))
                seeds.add("client_receive", f"{tag}-{i}", receive_seed(me, msg), shape)
                swapped = swap_message(msg)
                if swapped is not None:
                    seeds.add("client_receive", f"{tag}-{i}be", receive_seed(me, swapped), shape + (1,))
        if version >= 31600 and c_rest:
            seeds.add("client_handshake", f"{tag}-authreply", b"\x02" + c_rest[:90])
            c_rest = c_rest[90:]
        for side, rest in (("c", c_rest), ("d", d_rest)):
            if not rest:
                continue
            # First byte: chunk size - 1 for the framer (see spread::fuzzing::client_stream).
            seeds.add("client_stream", f"{tag}-{side}", bytes([len(rest) % 61]) + rest)
            for i, msg in enumerate(split_messages(rest)):
                shape = (msg[:4], len(msg))
                seeds.add("client_message", f"{tag}-{side}{i}", msg, shape)
                swapped = swap_message(msg)
                if swapped is not None:
                    seeds.add("client_message", f"{tag}-{side}{i}be", swapped, shape + (1,))
    if script:
        seeds.add("client_session", stem, b"".join(script))
    if node_script:
        # Ring formation first (kept whole), the conversation cut to fit, then time to finish.
        body = b"".join(node_script)[: MAX_SEED_LEN - 40 * 5 - 10 * 5]
        seeds.add("node_stateful", stem, idle(40) + body + idle(10))


# ------------------------------------------------------------------ daemon captures


def packet_messages(pkt):
    """(fragment_index, fragment bytes) of every fragment packed in a data packet."""
    if len(pkt) < 40:
        return []
    data_len, _pad, index, flen = struct.unpack("<HHhh", pkt[32:40])
    body = pkt[40 : 40 + data_len]
    out, pos = [], 0
    while 0 <= flen <= len(body) - pos:
        out.append((index, body[pos : pos + flen]))
        pos += flen
        pos = (pos + 3) & ~3
        if pos + 4 > len(body):
            break
        index, flen = struct.unpack("<hh", body[pos : pos + 4])
        pos += 4
    return out


def exchange_script(body):
    """group_exchange script around one captured GROUPS body (see its documentation)."""
    return (
        script_record(4, b"\x01")  # #a#d1 joins netgrp
        + script_record(4 | 1 << 3, b"\x02")  # #b#d1 joins twogrp
        + script_record(3, b"\x02\x02\x00")  # configuration d1 d2: exchange
        + script_record(1 | 1 << 3, body)  # d2's last GROUPS message
        # d2's synced set {d2}, in case the captured body carries none (not a first message)
        + script_record(1 | 1 << 3, bytes(8) + b"\x01" + struct.pack("<II", 1, 0x14C565A0))
        + script_record(7 | 7 << 3, body)  # the same body merged by Groups::install
    )


def daemon_capture(path, seeds):
    stem = os.path.basename(path)[: -len(".hex")]
    names = []  # daemon names in order of first appearance in the config
    conf_lines, in_conf, confs = [], False, []
    packets = []
    for lineno, line in enumerate(open(path, encoding="utf-8"), 1):
        if re.match(r"# spread\.conf", line):
            if conf_lines:
                confs.append("\n".join(conf_lines) + "\n")
            conf_lines, in_conf = [], True
            continue
        if in_conf:
            if line.startswith("#     "):
                conf_lines.append(line[6:].rstrip("\n"))
                continue
            confs.append("\n".join(conf_lines) + "\n")
            conf_lines, in_conf = [], False
        if not line.startswith("P "):
            continue
        _, t, src, dst, _len, hexs = line.split(" ", 5)
        packets.append((lineno, float(t), src.split(":")[0], dst, unhex(hexs)))
    for i, text in enumerate(confs):
        seeds.add("spread_conf", f"{stem}-{i}", text.encode())
        seeds.add("mbus_conf", f"{stem}-{i}", text.encode())
        for m in re.finditer(r"^\s*([\w.-]+)\s+\d+\.\d+\.\d+\.\d+\s*(?:#.*)?$", text, re.M):
            if m.group(1) not in names:
                names.append(m.group(1))

    partial = {}  # originator proc_id -> (seq of its last fragment, bytes so far)
    seen_seq = set()
    # The stateful script: what the first configured daemon received.
    me = names[0] if names else "d1"
    script, last_t = [], None
    for lineno, t, src, dst, pkt in packets:
        host, port = dst.rsplit(":", 1)
        port = int(port)
        name = f"{stem}-{lineno}"
        typ = struct.unpack("<I", pkt[:4])[0] if len(pkt) >= 4 else 0
        shape = (typ & ~0x00FF0000, len(pkt))
        if port == TOKEN_PORT:
            target = "membership" if typ & FORM_BITS else "token"
        elif port == DATA_PORT:
            if typ & MEMB_BITS:
                target = "membership"
            elif typ & CONTROL_BITS:
                target = "monitor"
            else:
                target = "daemon_packet"
        else:
            target = "monitor"  # status replies to the monitor's own port
        seeds.add(target, name, pkt, shape)
        if port in (DATA_PORT, TOKEN_PORT):
            # The ring engine's codec reads the same 5.0.1 datagrams.
            seeds.add("ring_packet", name, pkt, shape)
            # Acceptance check: received by the destination daemon (d1 for a broadcast) from
            # the source's address (3 = not a configured address).
            rx = names.index(host) if host in names else 0
            tx = names.index(src) if src in names else 3
            sel = (port == TOKEN_PORT) | (min(rx, 2) << 1) | (min(tx, 3) << 3)
            seeds.add("accept", name, bytes([sel]) + pkt, shape)
        if target == "daemon_packet" and len(pkt) >= 24:
            # Reassemble per originator in seq order; retransmitted / relayed copies of a
            # packet already seen are skipped.
            proc_id, memb, seq = pkt[8:12], pkt[12:20], struct.unpack("<I", pkt[20:24])[0]
            fresh = (proc_id, memb, seq) not in seen_seq
            seen_seq.add((proc_id, memb, seq))
            for index, frag in packet_messages(pkt) if fresh else []:
                prev_seq, buf = partial.pop(proc_id, (None, b""))
                if buf and prev_seq is not None and prev_seq + 1 != seq and prev_seq != seq:
                    buf = b""  # a gap: drop the partial message
                buf += frag
                if index > 0:
                    partial[proc_id] = (seq, buf)
                    continue
                if len(buf) >= 48:
                    mtyp = struct.unpack("<I", buf[:4])[0]
                    if mtyp & GROUPS_MESS:
                        seeds.add("groups", name, buf, (len(buf),))
                        body = buf[48 + 32 * struct.unpack("<i", buf[36:40])[0] :]
                        seeds.add("group_exchange", name, exchange_script(body), (len(buf),))
        if host.startswith("bcast") or host == me or src == me:
            if host.startswith("bcast") or host == me:
                if last_t is not None and t > last_t:
                    ms = min(int((t - last_t) * 1000), 0xFFFF)
                    if ms:
                        script.append(script_record(2, struct.pack("<H", ms)))
                last_t = t
                sender = names.index(src) if src in names else 0
                kind = 1 if port == TOKEN_PORT else 0
                if port in (DATA_PORT, TOKEN_PORT):
                    script.append(script_record(kind | ((sender % 32) << 3), pkt))
    if script:
        # The whole script is long; keep the first records (formation is the interesting part).
        out, size = [], 0
        for rec in script:
            if size + len(rec) > 16384:
                break
            out.append(rec)
            size += len(rec)
        seeds.files.setdefault("daemon_stateful", {})[f"cap-{stem}"] = b"".join(out)
        # node_stateful: the same datagrams as ring records (tag | 0x80) against whole nodes.
        node, size = [], 0
        for rec in out:
            if size + len(rec) > MAX_SEED_LEN:
                break
            node.append(bytes([rec[0] | 0x80]) + rec[1:])
            size += len(rec)
        seeds.add("node_stateful", stem, b"".join(node))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with fuzz/corpus")
    args = ap.parse_args()
    seeds = Seeds()
    for sub, fn in (("client", client_capture), ("daemon", daemon_capture)):
        d = os.path.join(DATA, sub)
        for f in sorted(os.listdir(d)):
            if f.endswith(".hex"):
                fn(os.path.join(d, f), seeds)
    example = os.path.join(ROOT, "mbus.conf.example")
    if os.path.exists(example):
        text = open(example, "rb").read()
        seeds.add("spread_conf", "mbus.conf.example", text)
        seeds.add("mbus_conf", "mbus.conf.example", text)

    stale = False
    for target, files in sorted(seeds.files.items()):
        tdir = os.path.join(CORPUS, target)
        os.makedirs(tdir, exist_ok=True)
        existing = {f for f in os.listdir(tdir) if f.startswith("cap-")}
        for name, data in files.items():
            p = os.path.join(tdir, name)
            old = open(p, "rb").read() if os.path.exists(p) else None
            if old != data:
                stale = True
                if not args.check:
                    with open(p, "wb") as fh:
                        fh.write(data)
        for name in existing - set(files):
            stale = True
            if not args.check:
                os.remove(os.path.join(tdir, name))
        total = sum(len(d) for d in files.values())
        print(f"{target:18} {len(files):5} seeds {total:9} bytes")
    if args.check and stale:
        print("fuzz/corpus is out of date: run python3 fuzz/seed_corpus.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
