#!/bin/sh
# Installs the Debian 12 packages this project needs to build, run and test.
set -e
pkgs="build-essential autoconf automake autoconf-archive pkg-config libevent-dev \
libjemalloc-dev libssl-dev nlohmann-json3-dev liburing-dev zlib1g-dev libxxhash-dev libfmt-dev \
googletest libgtest-dev python3 python3-pytest python3-pytest-timeout python3-pytest-xdist python3-pymemcache \
python3-matplotlib valgrind strace clang libclang-rt-14-dev \
memcached etcd-server etcd-client libcurl4-openssl-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "installing:$missing"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
# Debian starts its own memcached on 11211 when the package is installed; the tests only use
# the binary, so stop the service to leave the port to ours.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet memcached 2>/dev/null; then
    $sudo systemctl stop memcached || true
fi
# Likewise Debian's etcd-server starts a system etcd on 2379/2380; the tests start their own
# (t/lib/etcd.py, on ports they pick), so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    $sudo systemctl stop etcd || true
fi
