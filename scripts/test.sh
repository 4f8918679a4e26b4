#!/bin/sh
# One command for a fresh Debian 12 machine: install what is missing, build, and run every
# test: GoogleTest units and the pytest protocol suites (against ./memcached-debug and against
# Debian's memcached), a short smoke run of the benchmark, the tests again on an
# AddressSanitizer+UBSan build, and each parser's libFuzzer target for 20 seconds.
set -e
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
make -j"$(nproc)" check || { cat t/unit/unit_tests.log t/run-pytest.log 2>/dev/null | tail -200; exit 1; }
cat t/run-pytest.log | grep -E "passed|failed|error" || true
# A short smoke of the side-by-side benchmark (numbers are not judged here; see
# doc/performance.md for the real runs).
/usr/bin/python3 bench/compare.py --quick --out "${TMPDIR:-/tmp}/mcm-bench-smoke.json"
make -j"$(nproc)" sanitize-check
make fuzz-check FUZZ_SECONDS=20
