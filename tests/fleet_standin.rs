//! The fleet stand-in (`fleet-standin`, `deploy/fleet-standin/`) against a
//! real etcd and, where it runs units for real, the local Docker engine
//! with an image built FROM scratch (nothing can be pulled here). Scenarios
//! whose registry writes differ by API run twice: `v2::…` (what real fleet
//! uses) and `v3::…`. Docker scenarios are skipped, loudly, without an
//! engine.

mod support;

#[path = "fleet_standin/world.rs"]
mod world;

use std::time::{Duration, Instant};
use support::docker::{Container, docker_ok, test_image};
use support::fleet::Api;
use support::standin::Standin;
use world::{Shape, WAIT, World, hash_hex, kaylee_unit};

/// What a test container runs: busybox's sh as PID 1 exits on SIGTERM
/// (within a second), so `docker stop` is quick.
const SLEEPER: &str = "sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\"";

/// A unit named for its test and API, so parallel tests never share a
/// name (or a container).
fn fleet_name(api: Api, unit: &str, group: &str, replica: u32) -> String {
    format!("k:{unit}-{}:aaaaaa:{group}:{replica}.service", api.flag())
}

/// A unit for `--simulate`: the image matters only to `--fail-image`.
fn sim_unit(name: &str, image: &str, xfleet: &[&str]) -> String {
    let shape = Shape {
        xfleet,
        ..Shape::default()
    };
    kaylee_unit(name, "sim", image, &shape)
}

/// Flags written as one line.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The ids of running containers called exactly `name`.
fn running_containers(name: &str) -> Vec<String> {
    let filter = format!("name=^/{name}$");
    docker_ok(&["ps", "--filter", &filter, "--format", "{{.ID}}"])
        .lines()
        .map(str::to_string)
        .collect()
}

async fn schedules_by_metadata_machine_id_and_conflicts(api: Api) {
    let world = World::new(api).await;
    let w = &world;
    let fleet = Standin::start(
        &w.endpoint(),
        api,
        &words(
            "--machine m1 --machine m2 --machine m3 --metadata m1:ssd=true \
             --metadata m2:ssd=false --metadata m3:ssd=false --engine \
             --simulate --start-delay 200ms --fail-image broken/* --restart-sec 1s",
        ),
    );
    let log = || fleet.log();
    let ssd = &fleet_name(api, "ssd", "000001", 1);
    let ssd_text = &sim_unit(ssd, "sim/app:1", &["MachineMetadata=ssd=true"]);
    let pinned = &fleet_name(api, "pinned", "000002", 1);
    let pinned_text = &sim_unit(pinned, "sim/app:1", &["MachineID=m3"]);
    let nowhere = &fleet_name(api, "nowhere", "000003", 1);
    let broken = &fleet_name(api, "broken", "000005", 1);
    let group: Vec<String> = (1..=3)
        .map(|i| fleet_name(api, "grp", "000004", i))
        .collect();
    let group_glob = format!("Conflicts=k:grp-{}:aaaaaa:000004:*.service", api.flag());
    w.submit(ssd, ssd_text).await;
    w.submit(pinned, pinned_text).await;
    let text = sim_unit(nowhere, "sim/app:1", &["MachineMetadata=ssd=maybe"]);
    w.submit(nowhere, &text).await;
    let text = sim_unit(broken, "broken/app:1", &["MachineID=m2"]);
    w.submit(broken, &text).await;
    for name in &group {
        let xfleet = ["MachineMetadata=ssd=false", group_glob.as_str()];
        w.submit(name, &sim_unit(name, "sim/app:1", &xfleet)).await;
    }

    for (name, machine, text) in [(ssd, "m1", ssd_text), (pinned, "m3", pinned_text)] {
        let state = w.wait_state(name, machine, "active/running", log).await;
        assert_eq!(w.target(name).await.as_deref(), Some(machine));
        assert_eq!(state.unit_hash, hash_hex(text));
        assert_eq!(state.machine, machine);
    }
    let mut placed = Vec::new();
    for name in &group[..2] {
        let what = format!("{name} scheduled");
        placed.push(w.wait(&what, WAIT, log, || w.target(name)).await);
    }
    placed.sort();
    assert_eq!(
        placed,
        ["m2", "m3"],
        "one of the group per ssd=false machine"
    );
    // --fail-image: its ExecStartPre "fails", retried every RestartSec.
    w.wait_state(broken, "m2", "activating/auto-restart", log)
        .await;

    // Stopped by hand (`fleetctl stop`): stopped, still reported; then
    // started again.
    w.set_target_state(ssd, "loaded").await;
    w.wait_state(ssd, "m1", "inactive/dead", log).await;
    w.wait_gone(&format!("job/{ssd}/job-state"), log).await;
    w.set_target_state(ssd, "launched").await;
    w.wait_state(ssd, "m1", "active/running", log).await;

    // Nothing fits these: several engine rounds later, still no target and
    // no state anywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in [nowhere, &group[2]] {
        assert_eq!(w.target(name).await, None, "{name} has nowhere to go");
        for m in ["m1", "m2", "m3"] {
            assert_eq!(w.state(name, m).await, None, "{name} runs nowhere");
        }
    }
    assert!(fleet.log().contains("engine leadership acquired"));
}

async fn runs_units_on_docker_and_stops_them(api: Api) {
    require_docker!();
    let image = test_image();
    let world = World::new(api).await;
    let w = &world;
    let scratch = tempfile::tempdir().expect("temp dir");
    let env_file = scratch.path().join("greeting.env");
    std::fs::write(&env_file, "GREETING='hello from ${fleet}'\n").expect("env file");
    let env_line = env_file.display().to_string();

    let run = &fleet_name(api, "run", "000001", 1);
    let run_c = &kaylee_controllers::fleet::container_name(run);
    let absent = &fleet_name(api, "absent", "000002", 1);
    let absent_c = &kaylee_controllers::fleet::container_name(absent);
    let needs = &fleet_name(api, "needs", "000003", 1);
    let _guards = [Container::adopt(run_c), Container::adopt(absent_c)];

    let env_files = [env_line.as_str(), "-/nonexistent/optional.env"];
    let shape = Shape {
        env_files: &env_files,
        run_args: "-e \"GREETING=${GREETING}\"",
        cmd: SLEEPER,
        ..Shape::default()
    };
    let run_text = &kaylee_unit(run, "run", &image, &shape);
    // No registry answers here: pulling an image the engine lacks fails
    // its ExecStartPre, which Restart=always retries.
    let absent_image = format!("kaylee-standin-absent-{}:latest", api.flag());
    let absent_text = kaylee_unit(absent, "absent", &absent_image, &Shape::default());
    let shape = Shape {
        network_unit: Some("flanneld.service"),
        cmd: SLEEPER,
        ..Shape::default()
    };
    let needs_text = kaylee_unit(needs, "needs", &image, &shape);

    let mut fleet = Standin::start(
        &w.endpoint(),
        api,
        &words(
            "--machine m1 --engine --offline-pull --restart-sec 1s --stop-timeout 10s \
             --host-units docker.service",
        ),
    );
    w.submit(run, run_text).await;
    w.submit(absent, &absent_text).await;
    w.submit(needs, &needs_text).await;
    let log = || fleet.log();

    let state = w.wait_state(run, "m1", "active/running", log).await;
    assert_eq!(state.unit_hash, hash_hex(run_text));
    // active/running comes as `docker run` starts (Type=simple), the
    // container a moment later.
    let running = w
        .wait("docker ps to show it", WAIT, log, || async move {
            let ids = running_containers(run_c);
            (ids.len() == 1).then_some(ids)
        })
        .await;
    let env = docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &running[0]]);
    assert!(
        env.contains("GREETING=hello from ${fleet}"),
        "${{GREETING}} comes from the EnvironmentFile, substituted once: {env}"
    );
    assert_eq!(
        w.key(&format!("job/{run}/job-state")).await.as_deref(),
        Some("m1")
    );

    w.wait_state(absent, "m1", "activating/auto-restart", log)
        .await;
    assert!(running_containers(absent_c).is_empty());
    w.wait_state(needs, "m1", "inactive/dead", log).await;
    // Retried every second, the failing pull is logged once; the missing
    // requirement is never retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = fleet.log();
    assert_eq!(
        text.matches("requires flanneld.service").count(),
        1,
        "{text}"
    );
    let pull_failures = text
        .lines()
        .filter(|l| l.contains(absent.as_str()) && l.contains("ExecStartPre"))
        .count();
    assert_eq!(pull_failures, 1, "logged once per kind:\n{text}");
    let needs_state = w.state(needs, "m1").await.map(|s| s.pair());
    assert_eq!(needs_state.as_deref(), Some("inactive/dead"));

    // Destroyed: ExecStop stops the container (--rm removes it), the state
    // and the job-state go.
    w.destroy(run).await;
    w.wait_gone(&format!("states/{run}/m1"), log).await;
    assert!(running_containers(run_c).is_empty(), "{}", fleet.log());
    assert_eq!(w.key(&format!("job/{run}/job-state")).await, None);

    // SIGTERM: every unit stopped, every state and the machine entry gone.
    let status = fleet.sigterm(WAIT);
    assert!(status.success(), "{status}: {}", fleet.log());
    assert_eq!(w.key("machines/m1/object").await, None);
    for name in [absent, needs] {
        assert_eq!(w.state(name, "m1").await, None, "{name}");
    }
}

async fn a_killed_machine_expires_and_its_jobs_move(api: Api) {
    let world = World::new(api).await;
    let w = &world;
    // v3 leases last at least 2 s, so that is the machine TTL; states
    // linger longer.
    let common = "--simulate --start-delay 100ms --ttl 2s --state-ttl 5s";
    let mut doomed = Standin::start(
        &w.endpoint(),
        api,
        &words(&format!("--machine m1 {common}")),
    );
    let survivor = Standin::start(
        &w.endpoint(),
        api,
        &words(&format!("--machine m2 --engine {common}")),
    );
    let log = || format!("m1:\n{}\nm2:\n{}", doomed.log(), survivor.log());
    w.wait("both machines", WAIT, log, || async move {
        let both = w.key("machines/m1/object").await.is_some()
            && w.key("machines/m2/object").await.is_some();
        both.then_some(())
    })
    .await;

    // The least loaded machine with the lowest id: m1.
    let job = &fleet_name(api, "moves", "000001", 1);
    w.submit(job, &sim_unit(job, "sim/app:1", &[])).await;
    w.wait_state(job, "m1", "active/running", log).await;
    assert_eq!(w.target(job).await.as_deref(), Some("m1"));

    doomed.sigkill();
    let killed = Instant::now();
    let log = || survivor.log();
    w.wait_gone("machines/m1/object", log).await;
    let machine_gone = killed.elapsed();
    assert!(
        machine_gone >= Duration::from_millis(900),
        "m1 expired by its TTL, not at once: {machine_gone:?}"
    );
    assert!(
        w.state(job, "m1").await.is_some(),
        "m1's state outlives its machine entry"
    );
    w.wait_state(job, "m2", "active/running", log).await;
    assert_eq!(w.target(job).await.as_deref(), Some("m2"));
    w.wait_gone(&format!("states/{job}/m1"), log).await;
    let state_gone = killed.elapsed();
    assert!(
        state_gone >= machine_gone + Duration::from_secs(1) && state_gone >= Duration::from_secs(3),
        "the state lingered until its own TTL: {state_gone:?} (machine: {machine_gone:?})"
    );
}

async fn keeps_going_through_an_etcd_restart(api: Api) {
    let mut world = World::new(api).await;
    let mut fleet = Standin::start(
        &world.endpoint(),
        api,
        &words("--machine m1 --engine --simulate --start-delay 100ms"),
    );
    let before = &fleet_name(api, "before", "000001", 1);
    world
        .submit(before, &sim_unit(before, "sim/app:1", &[]))
        .await;
    world
        .wait_state(before, "m1", "active/running", || fleet.log())
        .await;

    world.etcd.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.etcd.restart();
    assert!(fleet.running(), "the stand-in survives etcd's restart");

    let w = &world;
    let log = || fleet.log();
    let after = &fleet_name(api, "after", "000002", 1);
    w.submit(after, &sim_unit(after, "sim/app:1", &[])).await;
    for name in [before, after] {
        w.wait_state(name, "m1", "active/running", log).await;
    }
    w.wait("the machine entry", WAIT, log, || {
        w.key("machines/m1/object")
    })
    .await;
    fleet.wait_log("recovered", WAIT);
    // Two seconds of failing rounds: each kind of problem logged once.
    let text = fleet.log();
    let mut kinds: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("logged once until it recovers"))
        .filter_map(|l| l.split("problem=").nth(1))
        .collect();
    assert!(!kinds.is_empty(), "the outage was noticed:\n{text}");
    let total = kinds.len();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), total, "one line per kind of problem:\n{text}");
}

async fn a_global_unit_runs_once_for_three_machines() {
    require_docker!();
    let image = test_image();
    let api = Api::V3;
    let world = World::new(api).await;
    let w = &world;
    let locks = tempfile::tempdir().expect("lock dir");
    let name = &fleet_name(api, "everywhere", "000001", 1);
    let container = &kaylee_controllers::fleet::container_name(name);
    let _guard = Container::adopt(container);
    let shape = Shape {
        cmd: SLEEPER,
        xfleet: &["MachineMetadata=role=worker", "Global=true"],
        ..Shape::default()
    };
    let text = &kaylee_unit(name, "everywhere", &image, &shape);
    let common = format!(
        "--metadata role=worker --offline-pull --restart-sec 1s --lock-dir {}",
        locks.path().display()
    );
    let mut two = Standin::start(
        &w.endpoint(),
        api,
        &words(&format!("--machine m1 --machine m2 {common}")),
    );
    let mut one = Standin::start(
        &w.endpoint(),
        api,
        &words(&format!("--machine m3 --engine {common}")),
    );
    let log = || format!("m1+m2:\n{}\nm3:\n{}", two.log(), one.log());
    w.submit(name, text).await;

    for m in ["m1", "m2", "m3"] {
        let state = w.wait_state(name, m, "active/running", log).await;
        assert_eq!(state.unit_hash, hash_hex(text));
    }
    assert_eq!(w.target(name).await, None, "a global unit has no target");
    // One container for all three machines, and it stays one.
    let first = w
        .wait("one container", WAIT, log, || async move {
            let ids = running_containers(container);
            (ids.len() == 1).then_some(ids)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running_containers(container), first, "{}", log());
    let first = &first;

    // The process that runs it stops: the other one takes over.
    let owner_is_two = two.log().contains("not pulled");
    let (owner, rest) = if owner_is_two {
        (&mut two, ["m3"].as_slice())
    } else {
        (&mut one, ["m1", "m2"].as_slice())
    };
    assert!(owner.sigterm(WAIT).success());
    let log = || format!("m1+m2:\n{}\nm3:\n{}", two.log(), one.log());
    w.wait("a new container", WAIT, log, || async move {
        let ids = running_containers(container);
        (ids.len() == 1 && ids != *first).then_some(())
    })
    .await;
    for m in rest {
        w.wait_state(name, m, "active/running", log).await;
    }

    w.destroy(name).await;
    for m in rest {
        w.wait_gone(&format!("states/{name}/{m}"), log).await;
    }
    assert!(running_containers(container).is_empty(), "{}", log());
}

/// The README's stand-in section names every flag `--help` shows.
#[test]
fn every_flag_is_in_the_readme() {
    let readme = include_str!("../README.md");
    let out = std::process::Command::new(support::standin::BIN)
        .arg("--help")
        .output()
        .expect("fleet-standin runs");
    let help = String::from_utf8_lossy(&out.stdout);
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| {
            w.starts_with("--") && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    assert!(flags.len() > 10, "{help}");
    for flag in flags {
        assert!(
            readme.contains(&format!("`{flag}")),
            "README does not document {flag}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_unit_runs_once_for_three_machines_v3() {
    a_global_unit_runs_once_for_three_machines().await;
}

for_each_api!(
    schedules_by_metadata_machine_id_and_conflicts,
    runs_units_on_docker_and_stops_them,
    a_killed_machine_expires_and_its_jobs_move,
    keeps_going_through_an_etcd_restart,
);
