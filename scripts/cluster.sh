#!/bin/sh
# shellcheck disable=SC2154  # pid_I and port_I are set through eval
# A local managed cluster for newcomers, in the foreground: N servers (default 3) in managed
# mode on free ports of 127.0.0.1 and one mc-coordinator in front of them, sharing a fresh
# random secret in a private temporary directory. Prints where everything listens and the
# mcctl commands to try; Ctrl-C (or any exit) stops every process it started, by PID, and
# removes the directory.
#
#   scripts/cluster.sh [N]
set -e
cd "$(dirname "$0")/.."
top=$(pwd -P)

n=${1:-3}
case "$n" in
    ''|*[!0-9]*) echo "usage: scripts/cluster.sh [N]   (N servers, 1 to 64; default 3)" >&2; exit 2 ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then
    echo "usage: scripts/cluster.sh [N]   (N servers, 1 to 64; default 3)" >&2
    exit 2
fi

scripts/deps.sh
scripts/build.sh >/dev/null
for b in memcached mc-coordinator; do
    if [ ! -x "./$b" ]; then
        echo "cluster.sh: ./$b was not built (make did not produce it)" >&2
        exit 1
    fi
done

user=""
[ "$(id -u)" -eq 0 ] && user="-u root"   # memcached refuses to run as root without -u

umask 077
dir=$(mktemp -d "${TMPDIR:-/tmp}/mc-cluster.XXXXXX")
pids=""

# Stops what this script started: each PID that is still a child of this shell (a PID the
# user already killed may have been reused by now), TERM first, KILL after 5 s.
# shellcheck disable=SC2317  # called through the trap
stop_all() {
    trap - EXIT INT TERM HUP
    set +e
    live=""
    for p in $pids; do
        ppid=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)
        [ "$ppid" = "$$" ] && kill -TERM "$p" 2>/dev/null && live="$live $p"
    done
    i=0
    while [ -n "$live" ] && [ "$i" -lt 50 ]; do
        still=""
        for p in $live; do kill -0 "$p" 2>/dev/null && still="$still $p"; done
        live=$still
        [ -n "$live" ] && sleep 0.1
        i=$((i + 1))
    done
    for p in $live; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap 'stop_all' EXIT
trap 'echo; echo "stopping the cluster"; exit 0' INT TERM HUP

# The port a process wrote in its port file: memcached writes "TCP INET: 12345" lines
# (MEMCACHED_PORT_FILENAME); the coordinator's --port-file is read as the last number in it
# ("12345" or "127.0.0.1:12345").
tcp_port() {
    [ -s "$1" ] || return 1
    if grep -q "INET:" "$1"; then
        awk '$1 == "TCP" && $2 == "INET:" { print $3; exit }' "$1"
    else
        tr -c '0-9' ' ' < "$1" | awk '{ if (NF) p = $NF } END { if (p != "") print p }'
    fi
}

# True while process $1 runs (an exited child stays a zombie until this shell reaps it, and
# a command substitution's subshell never does).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

# Waits up to 10 s for process $1's port file $2; prints the port, or its log ($3) and fails.
wait_port() {
    i=0
    while [ $i -lt 200 ]; do
        port=$(tcp_port "$2" 2>/dev/null || true)
        if [ -n "$port" ]; then echo "$port"; return 0; fi
        if ! alive "$1"; then
            echo "cluster.sh: process $1 exited; its log ($3):" >&2
            cat "$3" >&2
            return 1
        fi
        sleep 0.05
        i=$((i + 1))
    done
    echo "cluster.sh: no port from process $1 after 10 s; its log ($3):" >&2
    cat "$3" >&2
    return 1
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"

# The servers, each on a port of its own choosing (-p -1, reported through the port file).
i=1
while [ $i -le "$n" ]; do
    # shellcheck disable=SC2086  # $user is empty or "-u root"
    MEMCACHED_PORT_FILENAME="$dir/n$i.ports" ./memcached $user -l 127.0.0.1 -p -1 -U 0 \
        -o "node_id=n$i,cluster_secret_file=$dir/secret" > "$dir/n$i.log" 2>&1 &
    pids="$pids $!"
    eval "pid_$i=$!"
    i=$((i + 1))
done
nodes=""
i=1
while [ $i -le "$n" ]; do
    eval "pid=\$pid_$i"
    port=$(wait_port "$pid" "$dir/n$i.ports" "$dir/n$i.log")
    eval "port_$i=$port"
    nodes="$nodes --node n$i=127.0.0.1:$port"
    i=$((i + 1))
done

# --state is the state file itself (a JSON file the coordinator replaces atomically).
# shellcheck disable=SC2086  # $nodes is a list of options
./mc-coordinator --secret-file "$dir/secret" --state "$dir/coordinator.state" $nodes \
    --listen 127.0.0.1:0 --port-file "$dir/coord.port" > "$dir/coordinator.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
cport=$(wait_port "$cpid" "$dir/coord.port" "$dir/coordinator.log")
coord="127.0.0.1:$cport"

# The port file is written once the admin API listens, before the first map is dealt (the
# coordinator first waits for every server, up to 5 s): wait for epoch 1 or more, so the
# commands below show a working cluster, and report a coordinator that gave up.
start=$(date +%s)
until "$top/mcctl/mcctl" --coordinator "$coord" --timeout 1 --json status 2>/dev/null |
        grep -q '^  "epoch": [1-9]'; do
    if ! alive "$cpid"; then
        echo "cluster.sh: the coordinator (pid $cpid) exited; its log:" >&2
        cat "$dir/coordinator.log" >&2
        exit 1
    fi
    if [ $(($(date +%s) - start)) -ge 10 ]; then
        echo "cluster.sh: the coordinator dealt no map within 10 s; its log:" >&2
        cat "$dir/coordinator.log" >&2
        exit 1
    fi
    sleep 0.05
done

mcctl="$top/mcctl/mcctl --coordinator $coord --secret-file $dir/secret"
echo
echo "A local cluster of $n servers (Ctrl-C stops it all and removes $dir):"
echo
i=1
while [ $i -le "$n" ]; do
    eval "echo \"  n$i  memcached on 127.0.0.1:\$port_$i   pid \$pid_$i   log $dir/n$i.log\""
    i=$((i + 1))
done
echo "  coordinator admin API on http://$coord/   pid $cpid   log $dir/coordinator.log"
echo "  secret: $dir/secret"
echo
echo "Try:"
echo "  $mcctl status"
echo "  $mcctl watch"
echo "  $mcctl map --summary"
echo "  $mcctl failover n1"
echo
echo "or, shorter, in another shell:"
echo "  export MCCTL_COORDINATOR=$coord MC_SECRET_FILE=$dir/secret"
echo "  $top/mcctl/mcctl status"
echo
# The client hint names an interpreter that has pymemcache (scripts/deps.sh installs Debian's
# python3-pymemcache, for /usr/bin/python3, which another python3 first in PATH lacks).
py=python3
if ! python3 -c 'import pymemcache' 2>/dev/null && [ -x /usr/bin/python3 ] &&
        /usr/bin/python3 -c 'import pymemcache' 2>/dev/null; then
    py=/usr/bin/python3
fi
echo "Clients may use any server: a key whose bucket lives elsewhere is forwarded (one hop):"
echo "  $py -c \"from pymemcache.client.base import Client; c = Client(('127.0.0.1', $port_1)); c.set('k', 'v'); print(c.get('k'))\""
echo
echo "Kill a server and watch its buckets fail over to their replicas:"
echo "  kill -9 $pid_1      # n1"
echo "  $mcctl watch"
echo

# Until Ctrl-C. A server killed by hand leaves the others (and this script) running; if the
# coordinator itself stops, say so and stop the rest.
while alive "$cpid"; do sleep 1; done
echo "cluster.sh: the coordinator (pid $cpid) exited; the end of its log:" >&2
tail -20 "$dir/coordinator.log" >&2
exit 1
