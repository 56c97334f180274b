#!/usr/bin/env bash
# The single test command, for developers and CI alike:
#   deploy/test.sh
# Installs what the tests need from Debian's packages when it is missing
# (protoc, a real etcd, a static busybox for the Docker test image), then runs
# rustfmt, clippy, the whole workspace's tests, the quickstart's check
# mode (etcd and two servers on loopback) and a quick benchmark run.
# Integration tests spawn their own etcd on loopback ports and use the
# running Docker engine; they never pull images (no registry is reachable).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() {
    printf '\n==== %s ====\n' "$*"
}

# --- system packages -------------------------------------------------------
section "dependencies"
missing=()
if ! command -v protoc >/dev/null 2>&1; then
    missing+=(protobuf-compiler)
fi
# etcd-client's protos import protobuf's well-known types; Debian ships them in
# libprotobuf-dev, which --no-install-recommends would otherwise leave out.
if ! deploy/protoc-ok.sh; then
    missing+=(libprotobuf-dev)
fi
if ! command -v etcd >/dev/null 2>&1; then
    missing+=(etcd-server)
fi
# The test image is built FROM scratch, so busybox must be the static one.
if [ ! -x /bin/busybox ] || ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    missing+=(busybox-static)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing from Debian's packages: ${missing[*]}"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo_cmd=(sudo)
        else
            echo "error: missing ${missing[*]} and not root, with no sudo to install them" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in protoc etcd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is still missing after installing packages" >&2
        exit 1
    fi
done
if ! deploy/protoc-ok.sh; then
    echo "error: protoc cannot find google/protobuf/descriptor.proto after installing libprotobuf-dev" >&2
    exit 1
fi
echo "protoc:  $(protoc --version)"
echo "etcd:    $(etcd --version | head -n 1)"
echo "busybox: $(/bin/busybox 2>&1 | head -n 1)"
if docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
    echo "docker:  engine $(docker info --format '{{.ServerVersion}}')"
else
    echo "docker:  NO ENGINE ANSWERS: tests that need Docker will be SKIPPED (loudly)"
fi

# --- checks ----------------------------------------------------------------
section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test --workspace"
cargo test --workspace

section "deploy/quickstart.sh --check"
deploy/quickstart.sh --check

section "QUICKSTART_FLEET=none deploy/quickstart.sh --check (no fleet at all)"
QUICKSTART_FLEET=none deploy/quickstart.sh --check

section "fuzz targets (short run where nightly is available)"
deploy/fuzz.sh --short

section "deploy/bench.sh --quick (every scenario reports; timings are not checked)"
bench_out="$(mktemp)"
trap 'rm -f "$bench_out"' EXIT
# The bench's exit status is not the check: the lines are.
deploy/bench.sh --quick | tee "$bench_out" || true
line="$(grep '"scenario":"machine"' "$bench_out" || true)"
if [ -z "$line" ]; then
    echo "error: the benchmark printed no machine line" >&2
    exit 1
fi
# Every scenario but the planner runs through both fleet APIs.
for api in v2 v3; do
    for scenario in raw cold memory idle latency list failover; do
        line="$(grep "\"scenario\":\"$scenario\",\"fleet_api\":\"$api\"" "$bench_out" || true)"
        if [ -z "$line" ] || printf '%s' "$line" | grep -q '"error"'; then
            echo "error: the benchmark printed no $api $scenario result: ${line:-nothing}" >&2
            exit 1
        fi
    done
    if ! grep "\"scenario\":\"cold\",\"fleet_api\":\"$api\"" "$bench_out" | grep -q '"converged":true'; then
        echo "error: the benchmark's $api cold start did not converge" >&2
        exit 1
    fi
done
line="$(grep '"scenario":"planner"' "$bench_out" || true)"
if [ -z "$line" ] || printf '%s' "$line" | grep -q '"error"'; then
    echo "error: the benchmark printed no planner result: ${line:-nothing}" >&2
    exit 1
fi

section "all checks passed"
