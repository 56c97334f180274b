#!/usr/bin/env bash
# A local Kaylee on one machine, on loopback only:
#   deploy/quickstart.sh           install what is missing, build, start etcd,
#                                  two Kaylee servers (an HA pair) and, when a
#                                  Docker engine answers, a fleet stand-in for
#                                  this one machine; apply
#                                  deploy/examples/hello.yaml and show it
#   deploy/quickstart.sh stop      stop everything it started, remove its state
#   deploy/quickstart.sh --check   start, show, check, stop (what CI runs);
#                                  QUICKSTART_CHECK=1 does the same
#
# Real clusters run fleet. Here `fleet-standin` (deploy/fleet-standin) plays
# fleet's engine and one agent, running the unit's containers on this
# machine's Docker engine from an image the quickstart builds (FROM scratch,
# busybox; nothing is pulled), so you can see containers run, their IPs
# registered, the per-host limit leave replicas `not scheduled`, and `kaylee
# status` explain each. Without Docker (or with QUICKSTART_FLEET=none) there
# is no fleet at all: the units are written but nothing runs them, and hello
# shows 0/4 available with `no fleet machine is registered`. State, logs and
# PIDs live in ./.quickstart/.
#
# Settings (environment): QUICKSTART_RELEASE=1 builds with --release;
# QUICKSTART_ETCD_PORT (default 12379, peer port +1);
# QUICKSTART_PORTS (default "9477 9478": --listen ports of the two servers);
# QUICKSTART_FLEET=none: no fleet stand-in even when Docker answers.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
state="$root/.quickstart"
etcd_port=${QUICKSTART_ETCD_PORT:-12379}
peer_port=$((etcd_port + 1))
read -r -a ports <<<"${QUICKSTART_PORTS:-9477 9478}"
endpoint="http://127.0.0.1:$etcd_port"
check=${QUICKSTART_CHECK:-0}
# The machine id the stand-in's machine and server a share.
machine=quickstarta
image=kaylee-quickstart:1

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
    # The stand-in first: on SIGTERM it stops its units' containers.
    kill_recorded "$state/fleet-standin.pid" fleet-standin
    for f in "$state"/kaylee-*.pid; do
        [ -e "$f" ] && kill_recorded "$f" kaylee
    done
    kill_recorded "$state/etcd.pid" etcd
    # Whatever the stand-in could not stop: hello's containers only.
    if [ -f "$state/docker" ]; then
        docker ps -aq --filter label=kaylee.name=hello --filter name=k_hello_ |
            xargs -r docker rm -f >/dev/null 2>&1 || true
    fi
    rm -rf "$state"
}

case "${1:-}" in
stop)
    if [ -d "$state" ]; then
        stop_all
        echo "stopped the quickstart's fleet stand-in (and hello's containers), Kaylee servers and etcd; removed $state"
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
docker_answers=0
if [ "${QUICKSTART_FLEET:-}" != none ] && command -v docker >/dev/null 2>&1 &&
    docker info >/dev/null 2>&1; then
    docker_answers=1
    # The image is FROM scratch, so its busybox must be the static one.
    if [ ! -x /bin/busybox ] ||
        ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
        missing+=(busybox-static)
    fi
fi
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
say "cargo build${build_flags[*]:+ ${build_flags[*]}} --bin kaylee --bin fleet-standin"
cargo build "${build_flags[@]}" --bin kaylee --bin fleet-standin
kaylee="${CARGO_TARGET_DIR:-$root/target}/$profile/kaylee"
standin="${CARGO_TARGET_DIR:-$root/target}/$profile/fleet-standin"
[ -x "$kaylee" ] || fail "no binary at $kaylee after the build"
[ -x "$standin" ] || fail "no binary at $standin after the build"

# From here on, anything that fails stops what was started. A normal run
# leaves everything running on success.
mkdir -p "$state"
if [ "$docker_answers" = 1 ]; then
    touch "$state/docker"
fi
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
# No flanneld here: units require no network unit (the first server seeds
# the cluster's settings with that). Both servers run on this one machine,
# so only server a registers its containers (as the stand-in's machine); a
# real cluster runs one server per machine (deploy/kaylee-global.service).
start_server() {
    local id=$1 port=$2
    local registration=(--no-registrator)
    if [ "$id" = a ]; then
        registration=(--machine-id "$machine")
    fi
    "$kaylee" server \
        --listen "127.0.0.1:$port" \
        --name "quickstart-$id" \
        "${registration[@]}" \
        --network-unit '' \
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

# --- fleet -----------------------------------------------------------------
if [ "$docker_answers" = 1 ]; then
    say "fleet stand-in for machine $machine (Docker engine $(docker info --format '{{.ServerVersion}}'))"
    echo "fleet-standin plays fleet's engine and one agent so Kaylee can be tried on one"
    echo "machine; real clusters run fleet. It runs each unit's commands for real on this"
    echo "Docker engine, from $image, which is built here (FROM scratch, busybox)."
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        context="$state/image"
        mkdir -p "$context"
        cp /bin/busybox "$context/busybox"
        printf '%s\n' \
            'FROM scratch' \
            'COPY busybox /bin/busybox' \
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]' \
            'RUN ["/bin/busybox", "mkdir", "-p", "-m", "1777", "/tmp"]' \
            'ENV PATH=/bin' >"$context/Dockerfile"
        DOCKER_BUILDKIT=0 docker build --pull=false -t "$image" "$context" >"$state/image.log" 2>&1 ||
            DOCKER_BUILDKIT=1 docker build --pull=false -t "$image" "$context" >>"$state/image.log" 2>&1 ||
            fail "building $image failed (see $state/image.log)"
    fi
    echo "image $image is ready"
    "$standin" --etcd-endpoints "$endpoint" \
        --machine "$machine" --metadata ssd=false --engine \
        --restart-sec 5s \
        >"$state/fleet-standin.log" 2>&1 &
    echo $! >"$state/fleet-standin.pid"
    machine_up() {
        curl -fsS "$endpoint/v2/keys/_coreos.com/fleet/machines/$machine/object"
    }
    wait_for 20 machine_up || fail "the fleet stand-in did not announce its machine (see $state/fleet-standin.log)"
    echo "fleet-standin (pid $(cat "$state/fleet-standin.pid")) runs machine $machine"
else
    say "no fleet"
    echo "No Docker engine answers (or QUICKSTART_FLEET=none): no fleet stand-in, so nothing"
    echo "runs the units; kaylee says so."
fi

# --- a unit -----------------------------------------------------------------
say "kaylee run deploy/examples/hello.yaml"
"$kaylee" run deploy/examples/hello.yaml

fleet_units() {
    "$kaylee" status hello | grep -c '^k:hello:' || true
}
ls_line() {
    "$kaylee" ls | grep -E '^hello +'
}
# Two replicas serve (two per host, one host); two fit nowhere.
two_serve() {
    ls_line | grep -Eq '^hello +2/4 ' &&
        "$kaylee" status hello | grep -q 'not scheduled: no machine fits'
}
none_registered() {
    [ "$(fleet_units)" -eq 4 ] &&
        "$kaylee" status hello | grep -q 'no fleet machine is registered in this cluster'
}
if [ "$docker_answers" = 1 ]; then
    wait_for 90 two_serve || fail "hello never had 2 replicas available and 2 not scheduled"
else
    wait_for 30 none_registered || fail "the leader did not write hello's fleet units with their reason"
fi

say "kaylee ls"
"$kaylee" ls
say "kaylee status hello"
"$kaylee" status hello
started_ok=1

if [ "$check" = 1 ]; then
    say "checks"
    problems=0
    check() {
        local what=$1
        shift
        if "$@" >/dev/null 2>&1; then
            echo "ok: $what"
        else
            echo "FAIL: $what" >&2
            problems=1
        fi
    }
    registered() {
        "$kaylee" status hello | grep -Eq "^$machine +k_hello_[0-9a-f_]+ +[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+"
    }
    two_containers() {
        [ "$(docker ps -q --filter label=kaylee.name=hello | wc -l)" -eq 2 ]
    }
    explained() {
        "$kaylee" status hello |
            grep -q 'not scheduled: no machine fits (metadata ssd=false; conflicts on all 1 matching machine)'
    }
    zero_available() {
        ls_line | grep -Eq '^hello +0/4 +progressing'
    }
    if [ "$docker_answers" = 1 ]; then
        check "hello shows 2/4 available" two_serve
        check "kaylee status explains the unscheduled replicas" explained
        check "the running containers' IPs are registered" registered
        check "two containers run" two_containers
    else
        check "hello shows 0/4 available, progressing (never converged alone)" zero_available
        check "kaylee status says no fleet machine is registered" none_registered
    fi
    metrics=$(curl -fsS "http://127.0.0.1:${ports[0]}/metrics" || true)
    reconcile_metrics() {
        grep -q '^kaylee_reconcile_total{result="ok"} ' <<<"$metrics" &&
            grep -q '^kaylee_reconcile_duration_seconds_count ' <<<"$metrics"
    }
    check "the leader's /metrics has the reconcile counters" reconcile_metrics
    [ "$problems" -eq 0 ] || exit 1
    say "quickstart check passed"
    exit 0
fi

cat <<EOM

Kaylee is running on loopback:
  etcd            $endpoint       (log: $state/etcd.log)
  server a        127.0.0.1:${ports[0]}  (/metrics /healthz /readyz; log: $state/kaylee-a.log)
  server b        127.0.0.1:${ports[1]}  (log: $state/kaylee-b.log)
  fleet stand-in  machine $machine  (log: $state/fleet-standin.log; only with Docker)

Try:
  export ETCDCTL_ENDPOINTS=$endpoint
  $kaylee ls
  $kaylee status hello                       # a line per replica, and why
  curl -s <an IP from status>:8080           # hello from a container
  $kaylee history hello
  sed 's/kaylee-quickstart:1/kaylee-quickstart:2/' deploy/examples/hello.yaml > /tmp/hello2.yaml
  $kaylee run --wait /tmp/hello2.yaml        # a new version on a full host: no room to start
                                             # a new replica first, so the rollout stops at its
                                             # deadline (1 m) and both replicas keep serving
  curl -s 127.0.0.1:${ports[0]}/metrics | grep ^kaylee_
  kill \$(cat $state/kaylee-a.pid)    # the standby takes over

Stop everything:
  deploy/quickstart.sh stop
EOM
