#!/usr/bin/env bash
# A local Kaylee on one machine, on loopback only:
#   deploy/quickstart.sh           install what is missing, build, start etcd
#                                  and two Kaylee servers (an HA pair), apply
#                                  deploy/examples/countly.yaml, show it
#   deploy/quickstart.sh stop      stop everything it started, remove its state
#   deploy/quickstart.sh --check   start, show, check, stop (what CI runs);
#                                  QUICKSTART_CHECK=1 does the same
#
# There is no fleet here: the leader writes fleet's registry in etcd as
# fleetctl would, but nothing runs the containers, so countly shows 0/4
# running. State, logs and PIDs live in ./.quickstart/.
#
# Settings (environment): QUICKSTART_RELEASE=1 builds with --release;
# QUICKSTART_ETCD_PORT (default 12379, peer port +1);
# QUICKSTART_PORTS (default "9477 9478": --listen ports of the two servers).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
state="$root/.quickstart"
etcd_port=${QUICKSTART_ETCD_PORT:-12379}
peer_port=$((etcd_port + 1))
read -r -a ports <<<"${QUICKSTART_PORTS:-9477 9478}"
endpoint="http://127.0.0.1:$etcd_port"
check=${QUICKSTART_CHECK:-0}

say() {
    printf '\n==== %s ====\n' "$*"
}

fail() {
    echo "quickstart: $*" >&2
    exit 1
}

# Only a PID we recorded, and only while it is still the program we started
# (a PID can be reused after a reboot).
kill_recorded() {
    local file=$1 program=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$program"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

stop_all() {
    [ -d "$state" ] || return 0
    for f in "$state"/kaylee-*.pid; do
        [ -e "$f" ] && kill_recorded "$f" kaylee
    done
    kill_recorded "$state/etcd.pid" etcd
    rm -rf "$state"
}

case "${1:-}" in
stop)
    if [ -d "$state" ]; then
        stop_all
        echo "stopped the quickstart's etcd and Kaylee servers; removed $state"
    else
        echo "nothing to stop ($state does not exist)"
    fi
    exit 0
    ;;
--check) check=1 ;;
"") ;;
*)
    echo "usage: $0 [--check | stop]" >&2
    exit 2
    ;;
esac

if [ -d "$state" ]; then
    fail "$state exists: a quickstart is running or was not stopped; run '$0 stop' first"
fi

# --- dependencies -----------------------------------------------------------
say "dependencies"
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
deploy/protoc-ok.sh || missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing from Debian's packages: ${missing[*]}"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            fail "missing ${missing[*]} and not root, with no sudo to install them"
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in protoc etcd curl cargo; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (cargo: install Rust with rustup)"
done
echo "etcd: $(etcd --version | head -n 1)"

# --- build ------------------------------------------------------------------
profile=debug
build_flags=()
if [ "${QUICKSTART_RELEASE:-0}" = 1 ]; then
    profile=release
    build_flags=(--release)
fi
say "cargo build${build_flags[*]:+ ${build_flags[*]}} --bin kaylee"
cargo build "${build_flags[@]}" --bin kaylee
kaylee="${CARGO_TARGET_DIR:-$root/target}/$profile/kaylee"
[ -x "$kaylee" ] || fail "no binary at $kaylee after the build"

# From here on, anything that fails stops what was started. A normal run
# leaves everything running on success.
mkdir -p "$state"
started_ok=0
on_exit() {
    local rc=$?
    if [ "$started_ok" != 1 ] || [ "$check" = 1 ]; then
        if [ "$rc" -ne 0 ]; then
            for log in "$state"/*.log; do
                [ -e "$log" ] || continue
                echo "---- last lines of $log ----" >&2
                tail -n 20 "$log" >&2
            done
        fi
        say "stopping everything the quickstart started"
        stop_all
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1
    shift
    for _ in $(seq 1 $((seconds * 5))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

running() {
    kill -0 "$(cat "$1")" 2>/dev/null
}

# --- etcd -------------------------------------------------------------------
say "etcd on $endpoint (v2 API enabled, as fleet needs)"
etcd --name quickstart \
    --data-dir "$state/etcd" \
    --listen-client-urls "$endpoint" \
    --advertise-client-urls "$endpoint" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "quickstart=http://127.0.0.1:$peer_port" \
    --enable-v2=true \
    >"$state/etcd.log" 2>&1 &
echo $! >"$state/etcd.pid"
etcd_healthy() {
    curl -fsS "$endpoint/health" | grep -q '"health":"true"'
}
wait_for 20 etcd_healthy || fail "etcd did not become healthy on $endpoint (see $state/etcd.log)"
echo "etcd is healthy (pid $(cat "$state/etcd.pid"))"

export ETCDCTL_ENDPOINTS="$endpoint"

# --- two Kaylee servers -----------------------------------------------------
# The first one is started alone and becomes leader, so the metrics on the
# first port are the leader's.
start_server() {
    local id=$1 port=$2
    "$kaylee" server \
        --listen "127.0.0.1:$port" \
        --name "quickstart-$id" \
        --machine-id "quickstart$id" \
        --lease-ttl 5s \
        >"$state/kaylee-$id.log" 2>&1 &
    echo $! >"$state/kaylee-$id.pid"
}
ready() {
    curl -fsS "http://127.0.0.1:$1/readyz"
}
leading() {
    curl -fsS "http://127.0.0.1:$1/readyz" | grep -q '"leader":true'
}
say "Kaylee servers on 127.0.0.1:${ports[0]} and 127.0.0.1:${ports[1]}"
start_server a "${ports[0]}"
wait_for 20 leading "${ports[0]}" || {
    running "$state/kaylee-a.pid" || fail "the first server exited (see $state/kaylee-a.log)"
    fail "the first server did not become leader"
}
echo "server a (pid $(cat "$state/kaylee-a.pid")) leads:   $(ready "${ports[0]}")"
start_server b "${ports[1]}"
wait_for 20 ready "${ports[1]}" || {
    running "$state/kaylee-b.pid" || fail "the second server exited (see $state/kaylee-b.log)"
    fail "the second server is not ready"
}
echo "server b (pid $(cat "$state/kaylee-b.pid")) stands by: $(ready "${ports[1]}")"

# --- a unit -----------------------------------------------------------------
say "kaylee run deploy/examples/countly.yaml"
"$kaylee" run deploy/examples/countly.yaml

fleet_units() {
    "$kaylee" status countly | grep -c '^k:countly:' || true
}
four_fleet_units() {
    [ "$(fleet_units)" -eq 4 ]
}
wait_for 30 four_fleet_units || fail "the leader did not write countly's 4 fleet units"

say "kaylee ls"
"$kaylee" ls
say "kaylee status countly"
"$kaylee" status countly
started_ok=1

if [ "$check" = 1 ]; then
    say "checks"
    problems=0
    if "$kaylee" ls | grep -Eq '^countly +[0-9]+/4 '; then
        echo "ok: countly wants 4 replicas"
    else
        echo "FAIL: kaylee ls does not show 4 desired replicas for countly" >&2
        problems=1
    fi
    if [ "$(fleet_units)" -eq 4 ]; then
        echo "ok: countly has 4 fleet units"
    else
        echo "FAIL: kaylee status countly shows $(fleet_units) fleet units, not 4" >&2
        problems=1
    fi
    metrics=$(curl -fsS "http://127.0.0.1:${ports[0]}/metrics" || true)
    if grep -q '^kaylee_reconcile_total{result="ok"} ' <<<"$metrics" &&
        grep -q '^kaylee_reconcile_duration_seconds_count ' <<<"$metrics"; then
        echo "ok: the leader's /metrics has the reconcile counters"
    else
        echo "FAIL: 127.0.0.1:${ports[0]}/metrics lacks kaylee_reconcile_total / kaylee_reconcile_duration_seconds" >&2
        problems=1
    fi
    [ "$problems" -eq 0 ] || exit 1
    say "quickstart check passed"
    exit 0
fi

cat <<EOM

Kaylee is running on loopback:
  etcd            $endpoint       (log: $state/etcd.log)
  server a        127.0.0.1:${ports[0]}  (/metrics /healthz /readyz; log: $state/kaylee-a.log)
  server b        127.0.0.1:${ports[1]}  (log: $state/kaylee-b.log)

Try:
  export ETCDCTL_ENDPOINTS=$endpoint
  $kaylee ls
  $kaylee status countly
  curl -s 127.0.0.1:${ports[0]}/metrics | grep ^kaylee_
  kill \$(cat $state/kaylee-a.pid)    # the standby takes over

Stop everything:
  deploy/quickstart.sh stop
EOM
