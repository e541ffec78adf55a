#!/bin/sh
# Cost of the secure ring (docs/security.md, "Measured cost"): two rings of three of our
# daemons on 127.0.0.1-3 run side by side — plain on port $PP, secure (--link-key) on $PS —
# and mbus-bench floods each in turn from d1 (AGREED, $SIZE-byte bodies), alternating
# plain/secure $ROUNDS times; then latency the same way (window 1: send → own delivery, one
# message at a time; seconds / messages = mean latency). Take medians: the machine is shared.
# B=directory of release binaries (cargo build --release --bin spread --bin mbus-bench).
set -e
B=${B:-target/release}; W=${W:-/tmp/mbus-secure-bench}; PP=${PP:-26803}; PS=${PS:-26903}
SIZE=${SIZE:-1000}; N=${N:-30000}; ROUNDS=${ROUNDS:-3}; LAT=${LAT:-2000}
rm -rf $W; mkdir -p $W
openssl rand -hex 32 > $W/ring.key; chmod 600 $W/ring.key
for P in $PP $PS; do
  { printf 'Spread_Segment 127.255.255.255:%s {\n' $P
    for i in 1 2 3; do printf '  d%s 127.0.0.%s { D 127.0.0.%s C 127.0.0.%s }\n' $i $i $i $i; done
    printf '}\n'; } > $W/$P.conf
done
for i in 1 2 3; do
  mkdir -p $W/p$i $W/s$i
  MBUS_UNIX_SOCKET_DIR=$W/p$i $B/spread -n d$i -c $W/$PP.conf > $W/p$i.log 2>&1 & echo $! >> $W/pids
  MBUS_UNIX_SOCKET_DIR=$W/s$i $B/spread -n d$i -c $W/$PS.conf --link-key $W/ring.key > $W/s$i.log 2>&1 & echo $! >> $W/pids
done
trap 'kill $(cat $W/pids) 2>/dev/null' EXIT
sleep 4
for r in $(seq $ROUNDS); do
  for P in $PP $PS; do
    printf 'round %s %s ' $r "$([ $P = $PS ] && echo secure || echo plain)"
    $B/mbus-bench -s $P@127.0.0.1 -m $N -b $SIZE --service agreed | tail -1
  done
done
for r in $(seq $ROUNDS); do
  for P in $PP $PS; do
    printf 'latency %s %s ' $r "$([ $P = $PS ] && echo secure || echo plain)"
    $B/mbus-bench -s $P@127.0.0.1 -m $LAT -b $SIZE -w 1 --service agreed | tail -1
  done
done
grep -h "secure ring:" $W/s*.log | sort | uniq -c || true
