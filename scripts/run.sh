#!/bin/sh
# One command for a fresh Debian 12 machine: install what is missing, build, and run the
# server in the foreground on 127.0.0.1:11211. Extra arguments go to memcached.
set -e
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
user=""
[ "$(id -u)" -eq 0 ] && user="-u root"
echo "starting ./memcached on 127.0.0.1:11211 (Ctrl-C stops it)"
exec ./memcached -l 127.0.0.1 -p 11211 $user "$@"
