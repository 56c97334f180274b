#!/usr/bin/env bash
# Runs each cargo-fuzz target for a while, seeded with deploy/examples/.
#   deploy/fuzz.sh            60 s per target
#   deploy/fuzz.sh --short    10 s per target (what deploy/test.sh runs)
# libFuzzer needs a nightly toolchain and cargo-fuzz. Without them this says
# so and exits 0: the same checks already ran on stable as proptest tests
# (controllers/tests/fuzz_targets.rs, part of `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
if [[ "${1:-}" == "--short" ]]; then
  seconds=10
fi

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain with cargo-fuzz; the fuzz targets ran as proptest tests instead"
  exit 0
fi

for target in spec_yaml spec_json render_split; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  cp deploy/examples/* "$corpus/"
  echo "==== fuzz $target for ${seconds}s ===="
  (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds")
done
