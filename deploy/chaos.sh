#!/usr/bin/env bash
# The long chaos run of tests/chaos.rs (its short mode is part of
# `cargo test`): leader kills, a freeze now and then, one etcd restart, one
# compaction, random spec changes on 24 units; release build. Prints each
# run's summary lines and any violations; exits 1 if a run failed.
#   deploy/chaos.sh                      100 kills, fleet's registry via v3, then v2
#   deploy/chaos.sh 20                   20 kills
#   CHAOS_APIS=v3 deploy/chaos.sh        one variant only
#   KAYLEE_CHAOS_SEED=<seed> deploy/chaos.sh   replay a run's choices
# Full logs go to target/chaos/chaos-<api>.log (CHAOS_LOG_DIR to change).
set -euo pipefail
cd "$(dirname "$0")/.."

kills="${1:-100}"
apis="${CHAOS_APIS:-v3 v2}"
log_dir="${CHAOS_LOG_DIR:-target/chaos}"
mkdir -p "$log_dir"

echo "building (release)"
cargo test --release --test chaos --no-run

status=0
for api in $apis; do
  log="$log_dir/chaos-$api.log"
  echo "==== chaos $api: $kills kills (log: $log) ===="
  # One variant at a time: both at once would share two cores and stretch
  # every lease renewal.
  if ! KAYLEE_CHAOS_KILLS="$kills" cargo test --release --test chaos -- \
      --nocapture --exact "chaos_$api" >"$log" 2>&1; then
    status=1
  fi
  grep -E '^chaos (summary|details):' "$log" || echo "chaos $api: no summary line; see $log"
  grep '^chaos violation' "$log" || true
done
exit "$status"
