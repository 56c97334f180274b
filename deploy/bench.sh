#!/usr/bin/env bash
# The benchmark entry point:
#   deploy/bench.sh            full: 10,000 units x 4 replicas through each fleet
#                              API (v2, then v3), 3 cold/raw pairs each,
#                              1,000 latency samples (< 10 min)
#   deploy/bench.sh --quick    small: v2 200 units, v3 500 units, 1 pair each,
#                              100 samples (< 1 min once built)
# Builds the release kaylee binary and the bench program
# (deploy/bench/main.rs), which starts its own etcd (Debian's etcd-server,
# /usr/bin/etcd, or $KAYLEE_BENCH_ETCD, with --enable-v2) and kaylee servers
# on loopback, and prints one JSON object per line per scenario on stdout:
# machine; then raw, cold, memory, idle, latency, list and failover through
# v2 and again through v3 (each with "fleet_api"); planner. Progress goes to
# stderr.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x "${KAYLEE_BENCH_ETCD:-/usr/bin/etcd}" ]; then
    echo "error: no etcd at ${KAYLEE_BENCH_ETCD:-/usr/bin/etcd}; install Debian's etcd-server (deploy/test.sh does)" >&2
    exit 1
fi

# The bench profile is the release profile: this builds target/release/kaylee,
# which the bench runs (cargo tells it the path).
echo "kaylee-bench: building (release) ..." >&2
cargo build --release --bin kaylee
cargo bench --bench kaylee-bench --no-run
exec cargo bench --quiet --bench kaylee-bench -- "$@"
