//! `fleet-standin`: a stand-in for fleet v1.0.0 that behaves as real fleet
//! does towards etcd and runs each unit's commands on the local Docker
//! engine, for Kaylee's integration tests and `deploy/quickstart.sh`.
//!
//! One process stands for one or more fleet machines (`--machine`, repeatable)
//! and, with `--engine`, also competes to be fleet's engine (the scheduler).
//! It reads fleet's registry every `--interval` through the etcd API fleet
//! uses (v2, `--fleet-etcd-api v2`) or the flat v3 layout Kaylee also writes
//! (`--fleet-etcd-api v3`).
//!
//! # What it writes, as fleet v1.0.0 does (see docs/fleet-registry.md)
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `machines/<id>/object` | `{"ID":…,"PublicIP":…,"Metadata":{…},"Capabilities":{"DISABLE_ENGINE":…,"GRPC":false},"Version":"1.0.0"}` | `--ttl` |
//! | `states/<name>/<machine>` and legacy `state/<name>` | `{"loadState":…,"activeState":…,"subState":…,"machineState":{"ID":<machine>,…},"unitHash":"<sha1 hex>"}` | `--state-ttl` |
//! | `job/<name>/job-state` | the machine id, while the unit is launched there | `--ttl` |
//! | `job/<name>/target` | the machine the engine chose (created only if absent) | none |
//! | `lease/engine-leader` | `{"MachineID":…,"Version":1}` (engine leadership) | 5 × `--interval`, at least 2 s |
//! | `engine/version` | `1` | none |
//!
//! TTLs are v2 `ttl=` (refreshed by writing the key again, as fleet does) or
//! v3 leases (kept alive). On v3 the `target` and `job-state` writes are
//! transactions that need `job/<name>/object` to exist, so a job destroyed
//! meanwhile is never recreated as a stray key; v2 cannot compare two keys,
//! so there (as with real fleet) a destroy racing a write may leave one.
//!
//! # Engine (`--engine`)
//!
//! Holds `lease/engine-leader` like fleet's engine; only the holder
//! schedules. Each round, as fleet's reconciler: a scheduled job whose
//! target-state is `inactive`, whose machine left `machines/`, or that its
//! machine can no longer run is unscheduled (`target` deleted if it still
//! names that machine); then every unscheduled job that is not `inactive` goes
//! to the least loaded machine able to run it (fewest units, then lowest id).
//! A machine can run a job when it matches `MachineID=` (or its 8-character
//! short id), every `MachineMetadata=` key (values of one key are OR-ed),
//! every `MachineOf=` unit is scheduled there, and no `Conflicts=` glob (Go's
//! `path.Match`) of the job matches a unit there nor one of theirs matches the
//! job. `Global=true` units never get a target; they count on every machine
//! whose metadata they match. When nothing fits, no target is written.
//!
//! # Agents (one per `--machine`)
//!
//! A machine runs the jobs targeted at it and the global units whose
//! metadata it matches (minus those conflicting with one it already took, in
//! name order, as fleet's agent does). Only target-state `launched` runs;
//! `loaded` is stopped but keeps reporting `inactive/dead`; `inactive`, a
//! destroyed job (`job/<name>/` deleted) or a job moved away is stopped
//! (`ExecStop`) and its `states/<name>/<machine>` deleted. A unit's states,
//! with systemd's names:
//!
//! | activeState/subState | when |
//! |---|---|
//! | `activating/start-pre` | `ExecStartPre` commands running |
//! | `active/running` | `ExecStart`'s process runs (`Type=simple`) |
//! | `activating/auto-restart` | waiting `RestartSec` before the next start (`Restart=`) |
//! | `deactivating/stop` | `ExecStop` commands running |
//! | `failed/failed` | failed, and `Restart=` does not restart it |
//! | `inactive/dead` | stopped; exited cleanly; or a `Requires=`/`BindsTo=`/`Requisite=` unit missing from the host (not retried) |
//!
//! Units are read with the independent systemd reader of Kaylee's render
//! tests (`controllers/tests/support/systemd.rs`). At each start the
//! `EnvironmentFile=`s are read (`-`: may be missing; a missing one fails the
//! start, which `Restart=` retries), then the `ExecStartPre`s run in order (a
//! leading `-` ignores a failure), then `ExecStart` is supervised; when it
//! exits the `ExecStop`s run and `Restart=`/`RestartSec=` decide. `$NAME`
//! (a whole word: split on whitespace) and `${NAME}` are substituted from the
//! unit's environment files, `$$` is `$`, as systemd does. A missing absolute
//! program (the units say `/usr/bin/docker`) falls back to its basename on
//! `PATH`, logged once. Commands inherit this process's environment (for
//! `DOCKER_HOST`) plus the unit's, run in their own process group, and are
//! killed when this process dies. Their output goes to this process's log.
//!
//! Missing host units: systemd refuses to start a unit whose `Requires=` unit
//! does not exist. The units that exist here are `--host-units` and the fleet
//! units this process runs. `After=` only orders and never blocks a start.
//!
//! # One Docker engine for every machine
//!
//! Every machine of every stand-in process on this host shares the local
//! Docker engine. A replicated unit has its own container name, so it runs
//! for real wherever it is scheduled; when it moves (its machine died), the
//! new machine's `ExecStartPre` `docker kill`/`docker rm` take the stale
//! container over. A `Global=true` unit has one container name for all
//! machines, so it runs once per Docker engine: within a process one
//! supervisor stands for all its machines, and across processes the one that
//! holds a host-wide lock (`--lock-dir`) runs it while the others report the
//! state it publishes beside the lock. Every machine thus reports the one
//! container's state — **a global unit's copies are not independent here**.
//! Unit names are the lock's key, so two registries on one host (parallel
//! tests) must not use the same global unit name.
//!
//! # Without Docker (`--simulate`)
//!
//! Nothing is executed: a unit is `activating/start-pre` for `--start-delay`,
//! then `active/running` until stopped; a unit whose image (of its
//! `docker pull` `ExecStartPre`, else any `ExecStart` word) matches a
//! `--fail-image` glob fails its `ExecStartPre` forever
//! (`activating/auto-restart`, retried every `RestartSec`).
//!
//! # Stopping
//!
//! SIGKILL stands for a machine dying: nothing is cleaned, its entries expire
//! by their TTLs (and its unit processes die with it, though their containers
//! keep running until another machine takes them over). SIGTERM or SIGINT, as
//! fleet's shutdown: stop every unit (`ExecStop`), delete this process's
//! states, `job-state`s and machine entries, give up the engine lease, exit 0;
//! a second signal exits at once with 1. While etcd does not answer it keeps
//! retrying and logs each kind of problem once (and once when it recovers).
//!
//! # Not like fleet
//!
//! `Replaces=` is ignored; dynamic metadata (`machines/<id>/metadata/`) is
//! merged but never written; `ExecStartPost`, `ExecReload`, `ExecStopPost`,
//! `Environment=` and systemd's start rate limit are not supported. Removing
//! a unit deletes only this machine's `states/<name>/<machine>` (fleet deletes
//! the whole `states/<name>/`, erasing a dead machine's lingering state too).
//! `--restart-sec`/`--stop-timeout` override every unit's `RestartSec=`/
//! `TimeoutStopSec=` so tests need not wait 30 s; `--offline-pull` lets
//! `docker pull IMAGE` succeed without a registry when the engine already has
//! IMAGE.

// The independent systemd reader from the render tests, shared rather than
// copied; this program uses only part of it.
#[allow(dead_code)]
#[path = "../../controllers/tests/support/systemd.rs"]
mod systemd;

mod agent;
mod cli;
mod daemon;
mod desired;
mod engine;
mod env;
mod exec;
mod glob;
mod heartbeat;
mod placement;
mod problems;
mod publish;
mod records;
mod registry;
mod runner;
mod schedule;
mod service;
mod shared;
mod simulate;
mod status;
mod store;
mod supervise;
mod timespan;
mod xfleet;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fleet-standin: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    // One thread: unit processes are spawned from it, and their parent-death
    // signal follows the thread that spawned them (see exec.rs).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet-standin: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(daemon::run(settings))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
