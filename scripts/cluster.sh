#!/bin/sh
# shellcheck disable=SC2154  # pid_I, port_I and the like are set through eval
# A local managed cluster for newcomers, in the foreground: N servers (default 3) in managed
# mode on free ports of 127.0.0.1 and one mc-coordinator in front of them, sharing a fresh
# random secret in a private temporary directory. Prints where everything listens and the
# mcctl commands to try; Ctrl-C (or any exit) stops every process it started, by PID, and
# removes the directory.
#
# With --etcd, the coordinator keeps its state in etcd instead of a file, and there are three
# of them: the same directory also holds a three-member etcd cluster (Debian's etcd-server,
# on free ports of 127.0.0.1), and coordinators c1, c2 and c3 elect their leader there (an
# etcd lease; the others follow and take over within about its TTL, 3 s, when it dies). The
# script then runs while at least one coordinator does, so that they can be killed by hand.
#
#   scripts/cluster.sh [N]
#   scripts/cluster.sh --etcd [N]
set -e
cd "$(dirname "$0")/.."
top=$(pwd -P)

usage() {
    echo "usage: scripts/cluster.sh [--etcd] [N]   (N servers, 1 to 64; default 3;" >&2
    echo "       --etcd: three coordinators electing a leader in a three-member etcd cluster)" >&2
    exit 2
}
# --etcd may come before or after N; as before, arguments after N are not looked at.
etcd=0
if [ "${1:-}" = "--etcd" ]; then
    etcd=1
    shift
elif [ "${2:-}" = "--etcd" ]; then
    etcd=1
fi
n=${1:-3}
case "$n" in
    ''|*[!0-9]*) usage ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then
    usage
fi

scripts/deps.sh
scripts/build.sh >/dev/null
for b in memcached mc-coordinator; do
    if [ ! -x "./$b" ]; then
        echo "cluster.sh: ./$b was not built (make did not produce it)" >&2
        exit 1
    fi
done
if [ $etcd = 1 ]; then
    for b in /usr/bin/etcd curl; do
        if ! command -v "$b" >/dev/null 2>&1; then
            echo "cluster.sh: --etcd needs $b (Debian: etcd-server, curl)" >&2
            exit 1
        fi
    done
fi
py=python3   # for the ports below: /usr/bin/python3 when there is one (scripts/deps.sh's)
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

user=""
[ "$(id -u)" -eq 0 ] && user="-u root"   # memcached refuses to run as root without -u

umask 077
dir=$(mktemp -d "${TMPDIR:-/tmp}/mc-cluster.XXXXXX")
# True while process $1 runs (an exited child stays a zombie until this shell reaps it, and
# a command substitution's subshell never does).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

pids=""    # the servers (and, without --etcd, the coordinator)
cpids=""   # with --etcd: the coordinators, stopped first (they talk to etcd until they exit)
epids=""   # with --etcd: the etcd members, stopped last

# Stops processes $1 this script started: each PID that is still a child of this shell (a PID
# the user already killed may have been reused by now), TERM first, KILL after 5 s.
# shellcheck disable=SC2317  # called through the trap
stop_pids() {
    live=""
    for p in $1; do
        ppid=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)
        [ "$ppid" = "$$" ] && kill -TERM "$p" 2>/dev/null && live="$live $p"
    done
    i=0
    while [ -n "$live" ] && [ "$i" -lt 50 ]; do
        still=""
        for p in $live; do alive "$p" && still="$still $p"; done
        live=$still
        [ -n "$live" ] && sleep 0.1
        i=$((i + 1))
    done
    for p in $live; do kill -KILL "$p" 2>/dev/null; done
    # Reaps just these (a bare wait would also wait for the ones not signalled yet).
    for p in $1; do wait "$p" 2>/dev/null; done
}
# shellcheck disable=SC2317  # called through the trap
stop_all() {
    trap - EXIT INT TERM HUP
    set +e
    [ -n "$cpids" ] && stop_pids "$cpids"
    stop_pids "$pids $epids"
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

# Prints $1 distinct ports the OS had free on 127.0.0.1 (all bound at once, then closed).
free_ports() {
    "$py" -c 'import socket, sys
ss = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# Waits up to 30 s for every etcd member to answer /health with "health":"true" (a member
# does once the cluster has a leader).
wait_etcd() {
    start=$(date +%s)
    while :; do
        ok=0
        for i in 1 2 3; do
            eval "c=\$ec_$i pid=\$epid_$i"
            if ! alive "$pid"; then
                echo "cluster.sh: etcd member e$i (pid $pid) exited" >&2
                return 1
            fi
            if curl -s -m 1 "http://127.0.0.1:$c/health" 2>/dev/null |
                    grep -q '"health":"true"'; then
                ok=$((ok + 1))
            fi
        done
        [ $ok -eq 3 ] && return 0
        if [ $(($(date +%s) - start)) -ge 30 ]; then
            echo "cluster.sh: the etcd members were not all healthy within 30 s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# With --etcd: a three-member etcd cluster, e1 e2 e3, each with a client and a peer port the
# OS had free a moment ago; if another process took one meanwhile ("address already in
# use"), the whole start is retried on fresh ports, up to three times.
if [ $etcd = 1 ]; then
    try=1
    while :; do
        # shellcheck disable=SC2046  # six port numbers
        set -- $(free_ports 6)
        if [ $# -ne 6 ]; then
            echo "cluster.sh: could not pick free ports (with $py)" >&2
            exit 1
        fi
        ec_1=$1 ec_2=$2 ec_3=$3 ep_1=$4 ep_2=$5 ep_3=$6
        token="mc-cluster-$$-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        initial="e1=http://127.0.0.1:$ep_1,e2=http://127.0.0.1:$ep_2,e3=http://127.0.0.1:$ep_3"
        epids=""
        for i in 1 2 3; do
            eval "c=\$ec_$i p=\$ep_$i"
            # etcd reads any ETCD_* variable as a flag: none of the caller's may reach it.
            (
                for v in $(env | sed -n 's/^\(ETCD[A-Za-z0-9_]*\)=.*/\1/p'); do
                    unset "$v" 2>/dev/null || true
                done
                exec /usr/bin/etcd --name "e$i" --data-dir "$dir/e$i.data" \
                    --listen-client-urls "http://127.0.0.1:$c" \
                    --advertise-client-urls "http://127.0.0.1:$c" \
                    --listen-peer-urls "http://127.0.0.1:$p" \
                    --initial-advertise-peer-urls "http://127.0.0.1:$p" \
                    --initial-cluster "$initial" --initial-cluster-token "$token" \
                    --initial-cluster-state new --logger zap --log-outputs stderr
            ) > "$dir/e$i.log" 2>&1 < /dev/null &
            eval "epid_$i=$!"
            epids="$epids $!"
        done
        if wait_etcd; then
            break
        fi
        if [ $try -lt 3 ] &&
                grep -q "address already in use" "$dir/e1.log" "$dir/e2.log" "$dir/e3.log"; then
            echo "cluster.sh: an etcd port was taken meanwhile; again on other ports" >&2
            stop_pids "$epids"
            epids=""
            for i in 1 2 3; do
                rm -rf "$dir/e$i.data"
                mv "$dir/e$i.log" "$dir/e$i.log.clash$try"
            done
            try=$((try + 1))
            continue
        fi
        for i in 1 2 3; do
            echo "--- the end of $dir/e$i.log:" >&2
            tail -20 "$dir/e$i.log" >&2
        done
        exit 1
    done
    endpoints="127.0.0.1:$ec_1,127.0.0.1:$ec_2,127.0.0.1:$ec_3"
fi

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

if [ $etcd = 1 ]; then
    # Three coordinators with the same --node list, their state under /mcm/local in etcd:
    # whichever is elected first deals the first map; the others follow (their admin API
    # answers status from etcd, naming the leader) and one of them takes over within about
    # the lease TTL (--etcd-lease-ttl, 3 s) once the leader is gone.
    state="etcd://$endpoints/mcm/local"
    for k in 1 2 3; do
        # shellcheck disable=SC2086  # $nodes is a list of options
        ./mc-coordinator --secret-file "$dir/secret" --state "$state" --id "c$k" $nodes \
            --listen 127.0.0.1:0 --port-file "$dir/c$k.port" > "$dir/c$k.log" 2>&1 &
        eval "cpid_$k=$!"
        cpids="$cpids $!"
    done
    for k in 1 2 3; do
        eval "pid=\$cpid_$k"
        port=$(wait_port "$pid" "$dir/c$k.port" "$dir/c$k.log")
        eval "cport_$k=$port"
    done

    # Until one of them leads with a map dealt (epoch 1 or more): up to 15 s.
    lead=""
    start=$(date +%s)
    while [ -z "$lead" ]; do
        for k in 1 2 3; do
            eval "a=127.0.0.1:\$cport_$k pid=\$cpid_$k"
            if ! alive "$pid"; then
                echo "cluster.sh: coordinator c$k (pid $pid) exited; its log:" >&2
                cat "$dir/c$k.log" >&2
                exit 1
            fi
            st=$("$top/mcctl/mcctl" --coordinator "$a" --timeout 1 --json status 2>/dev/null ||
                true)
            if printf '%s\n' "$st" | grep -q '^  "role": "leader"' &&
                    printf '%s\n' "$st" | grep -q '^  "epoch": [1-9]'; then
                lead=$k
                break
            fi
        done
        [ -n "$lead" ] && break
        if [ $(($(date +%s) - start)) -ge 15 ]; then
            echo "cluster.sh: no coordinator led with a map within 15 s; their logs:" >&2
            for k in 1 2 3; do
                echo "--- $dir/c$k.log:" >&2
                cat "$dir/c$k.log" >&2
            done
            exit 1
        fi
        sleep 0.1
    done
    f=$((lead % 3 + 1))   # a follower
    eval "leader=127.0.0.1:\$cport_$lead lpid=\$cpid_$lead follower=127.0.0.1:\$cport_$f"

    mcctl="$top/mcctl/mcctl --coordinator $leader --secret-file $dir/secret"
    fmcctl="$top/mcctl/mcctl --coordinator $follower --secret-file $dir/secret"
    echo
    echo "A local cluster of $n servers, three coordinators and a three-member etcd cluster"
    echo "(Ctrl-C stops it all and removes $dir):"
    echo
    echo "etcd (the coordinators' state and leader election, under /mcm/local):"
    for i in 1 2 3; do
        eval "echo \"  e$i  http://127.0.0.1:\$ec_$i   pid \$epid_$i   log $dir/e$i.log\""
    done
    echo "coordinators (one leads, elected through an etcd lease; the others follow):"
    for k in 1 2 3; do
        role=follower
        [ "$k" = "$lead" ] && role=leader
        eval "a=127.0.0.1:\$cport_$k pid=\$cpid_$k"
        echo "  c$k  admin API on http://$a/   pid $pid   log $dir/c$k.log   ($role)"
    done
    echo "servers:"
    i=1
    while [ $i -le "$n" ]; do
        eval "echo \"  n$i  memcached on 127.0.0.1:\$port_$i   pid \$pid_$i   log $dir/n$i.log\""
        i=$((i + 1))
    done
    echo "  secret: $dir/secret"
    echo
    echo "Try:"
    echo "  $fmcctl status      # c$f, a follower: the leader, the others, etcd's health"
    echo "  $mcctl status      # c$lead, the leader"
    echo "  $mcctl watch"
    echo "  $mcctl map --summary"
    echo "  $fmcctl failover n1      # sent to a follower, redirected to the leader"
    echo
    echo "Kill the leading coordinator; another leads within about 3 s (the lease TTL):"
    echo "  kill -9 $lpid      # c$lead"
    echo "  $fmcctl status"
    echo
    echo "Kill one etcd member: two of three are a majority, nothing changes:"
    echo "  kill -9 $epid_3      # e3"
    echo "  $fmcctl status"
    echo
    echo "What the coordinators keep in etcd:"
    echo "  ETCDCTL_API=3 etcdctl --endpoints=$endpoints get --prefix /mcm/local --keys-only"
    echo
    echo "or, shorter, in another shell:"
    echo "  export MCCTL_COORDINATOR=$follower MC_SECRET_FILE=$dir/secret"
    echo "  $top/mcctl/mcctl status"
    echo
    echo "Kill a server and watch its buckets fail over to their replicas:"
    echo "  kill -9 $pid_1      # n1"
    echo "  $mcctl watch"
    echo
    echo "This runs while at least one coordinator does (kill them by hand); once the last one"
    echo "is gone, it stops the rest."
    echo

    # Until Ctrl-C or the last coordinator is gone; says which coordinator or etcd member
    # exited as it notices.
    while :; do
        left=0
        for k in 1 2 3; do
            eval "pid=\$cpid_$k gone=\${cgone_$k:-}"
            if alive "$pid"; then
                left=$((left + 1))
            elif [ -z "$gone" ]; then
                eval "cgone_$k=1"
                echo "cluster.sh: coordinator c$k (pid $pid) exited"
            fi
        done
        for i in 1 2 3; do
            eval "pid=\$epid_$i gone=\${egone_$i:-}"
            if [ -z "$gone" ] && ! alive "$pid"; then
                eval "egone_$i=1"
                echo "cluster.sh: etcd member e$i (pid $pid) exited"
            fi
        done
        [ $left -eq 0 ] && break
        sleep 1
    done
    echo "cluster.sh: every coordinator has exited; stopping the cluster" >&2
    exit 1
fi

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
