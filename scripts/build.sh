#!/bin/sh
# Configures (once) and builds the tree in place: ./memcached and ./memcached-debug.
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
