#!/bin/sh
# Closing-note session: one Spread daemon on loopback, eccmgr + 3 mbus-node in two subclusters.
# SPREAD=path of a spread daemon (default: ours, target/debug/spread); B=directory of the mbus binaries.
set -e
W=${W:-/tmp/ccdemo}; P=${P:-24803}; B=${B:-target/debug}; SPREAD=${SPREAD:-$B/spread}; mkdir -p $W
printf 'Spread_Segment 127.0.0.255:%s {\n    localhost 127.0.0.1\n}\nRuntimeDir = %s\nDaemonUser = root\nDaemonGroup = root\nSocketPortReuse = ON\n' $P $W > $W/spread.conf
cat > $W/mbus.conf <<'X'
# Subcluster: east => mgr.example.com
Spread_Segment 10.9.0.255:4803 {
  n1 10.9.0.1
  n2 10.9.0.2
}
# Subcluster: west = mgr.example.com
Spread_Segment 10.9.1.255:4803 {
  n3 10.9.1.3
}
X
printf 'Control_Listener { Listen "%s/2025" { } }\nLogs { Control_Cache = "%s/control.cache" }\n' $W $W > $W/eccluster.conf
cat > $W/node.conf <<'X'
Binding "b1" { Bind_Address = 10.9.0.101 Enable_Duravip = true }
Binding "b2" { Bind_Address = 10.9.0.102 Enable_Duravip = true Duravip_Preference = "n3" }
cluster { Topology "10.9.0.0/24" { interface = eth1 cidrmask = 32 }
  Command "sieve:sieve1 flush cache" { Program = "/bin/echo" Args = ( "flushed 0 entries from the script cache" ) Timeout = 5 } }
X
$SPREAD -n localhost -c $W/spread.conf > $W/spread.log 2>&1 & echo $! > $W/spread.pid
sleep 1
$B/eccmgr -c $W/eccluster.conf -s $P@127.0.0.1 -m $W/mbus.conf -v > $W/eccmgr.log 2>&1 & echo $! > $W/eccmgr.pid
for n in n1 n2 n3; do $B/mbus-node -s $P@127.0.0.1 -n $n -m $W/mbus.conf -c $W/node.conf -v > $W/$n.log 2>&1 & echo $! > $W/$n.pid; done
sleep 2
run() { echo "$(date +%H:%M:%S) $W/2025> $1"; $B/ec_console $W/2025 $1 || true; }
run "version"; run "info"; run "show cluster membership"
run "broadcast cluster nodeaddr"; sleep 0.5; run "retrieve cluster nodeaddr"
run "subcluster broadcast west cluster info"; sleep 0.5; run "subcluster retrieve west cluster info"
run "subcluster broadcast north version"
run "unicast n2 sieve:sieve1 flush cache"; sleep 0.5; run "retrieve_node n2 sieve:sieve1 flush cache"
run "broadcast cluster duravip move 10.9.0.102 to n1"; sleep 0.5; run "retrieve cluster duravip move 10.9.0.102 to n1"
run "unicast n1 cluster duravip show"; sleep 0.5; run "retrieve_node n1 cluster duravip show"
kill -9 $(cat $W/n2.pid); echo "(n2 killed)"; sleep 1
run "broadcast cluster nodename"; sleep 0.5; run "retrieve cluster nodename"
run "broadcast frobnicate"; sleep 0.5; run "subcluster retrieve west frobnicate"
run "frob"; run "config get Logs Control_Cache"
kill -9 $(cat $W/spread.pid); echo "(daemon killed)"; sleep 0.3; run "broadcast version"
$SPREAD -n localhost -c $W/spread.conf >> $W/spread.log 2>&1 & echo $! > $W/spread.pid; echo "(daemon restarted)"; sleep 3
run "info"; run "shutdown"
kill $(cat $W/n1.pid) $(cat $W/n3.pid) $(cat $W/spread.pid) 2>/dev/null || true
