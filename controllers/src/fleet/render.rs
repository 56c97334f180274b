//! Spec → fleet units (docs/design.md §4): a pure function, so that every server
//! renders the same bytes and the planner can compare names and hashes.

use super::naming::{FleetName, container_name, group_id, spec_hash};
use super::quote::{escape_specifiers, exec_word, exec_word_expanding, wrap_words};
use super::records::{UnitHash, unit_hash};
use super::reference;
use super::unitfile::{UnitOption, serialize};
use crate::spec::{Layout, PullPolicy, Unit};

const DOCKER: &str = "/usr/bin/docker";
/// GNU coreutils' timeout(1), at this path on CoreOS and Debian alike.
const TIMEOUT: &str = "/usr/bin/timeout";
const SH: &str = "/bin/sh";
/// How long timeout(1) waits after its SIGTERM to the pull before SIGKILL.
const PULL_KILL_AFTER_SECS: u32 = 10;
/// What a start may take beyond the pull: volume creates, the image check,
/// kill and rm of an old container. `TimeoutStartSec=` is the pull timeout
/// plus this, so a Docker daemon that hangs fails the start (and systemd
/// retries after `RestartSec=`) instead of blocking it forever.
const START_MARGIN_SECS: u32 = 120;
/// `docker run` exits with the container's status: 143 when `docker stop`'s
/// SIGTERM ended it, 137 when the SIGKILL after the stop timeout did. A stop
/// is no failure (`SuccessExitStatus=` in systemd.service(5): exit codes
/// separated by spaces).
const DOCKER_STOP_STATUSES: &str = "137 143";

/// Server-wide settings that shape every rendered unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// `k` in `k:countly:…`; never contains `:`.
    pub unit_prefix: String,
    /// `Requires=`/`After=` target (default `flanneld.service`); empty for none.
    pub network_unit: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            unit_prefix: "k".into(),
            network_unit: "flanneld.service".into(),
        }
    }
}

impl RenderOptions {
    /// Checks operator-given settings; they are not quoted in the unit text.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |s: &str, extra: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        if self.unit_prefix.is_empty() || !ok(&self.unit_prefix, "_.-") {
            return Err(format!(
                "unit prefix `{}` must be letters, digits, `_.-` (no `:`)",
                self.unit_prefix.escape_debug()
            ));
        }
        if !ok(&self.network_unit, "_.@:-") {
            return Err(format!(
                "network unit `{}` must be a systemd unit name",
                self.network_unit.escape_debug()
            ));
        }
        Ok(())
    }
}

/// One fleet unit Kaylee wants to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetUnit {
    /// The fleet name, which also carries the spec hash, group and replica.
    pub name: FleetName,
    /// The unit file in go-systemd's serialized form (the `Raw` fleet stores).
    pub text: String,
    /// SHA-1 of `text`: its `unit/<hex>` key and the job object's `UnitHash`.
    pub hash: UnitHash,
}

/// The whole desired set of one Kaylee unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// 6 hex digits shared by every unit of this version (see
    /// [`super::naming::spec_hash`]); it changes with the template, the
    /// restart marker and the network unit, not with the replica count.
    pub spec_hash: String,
    /// How the units are laid out and replaced (replicated, singleton…).
    pub layout: Layout,
    /// One unit per replica, replica 1 first; exactly one for singleton,
    /// global and pinned units.
    pub units: Vec<FleetUnit>,
}

/// Renders every fleet unit of `unit`. `restart_marker` is the value of
/// `/kaylee/restarts/<name>` (empty when there is none).
pub fn render(unit: &Unit, restart_marker: &str, opts: &RenderOptions) -> Rendered {
    let hash = spec_hash(unit, restart_marker, &opts.network_unit);
    let layout = unit.layout();
    let units = (1..=unit.desired_replicas())
        .map(|replica| render_replica(unit, &hash, layout, replica, opts))
        .collect();
    Rendered {
        spec_hash: hash,
        layout,
        units,
    }
}

/// The conflict group of replica `i` (1-based): `i mod groups`, or a group of
/// its own when the spec sets no per-host limit, so that scaling never moves
/// an existing replica to another group (and another name).
fn group_index(layout: Layout, replica: u32) -> u32 {
    match layout {
        Layout::Replicated {
            groups: Some(g), ..
        } => replica % g,
        Layout::Replicated { groups: None, .. } => replica,
        _ => 0,
    }
}

fn render_replica(
    unit: &Unit,
    spec_hash: &str,
    layout: Layout,
    replica: u32,
    opts: &RenderOptions,
) -> FleetUnit {
    let index = group_index(layout, replica);
    // A per-host limit must hold across templates (old replicas beside new
    // ones mid-rollout), so its groups are the unit's, not a template's.
    let group = match layout {
        Layout::Replicated {
            groups: Some(_), ..
        } => group_id(&unit.name, index),
        _ => group_id(spec_hash, index),
    };
    let name = FleetName {
        prefix: opts.unit_prefix.clone(),
        unit: unit.name.clone(),
        spec_hash: spec_hash.to_string(),
        group,
        replica,
    };
    let text = serialize(&options(unit, &name, layout, opts));
    let hash = unit_hash(&text);
    FleetUnit { name, text, hash }
}

fn exec(key: &'static str, words: Vec<String>) -> UnitOption {
    UnitOption::new("Service", key, wrap_words(key, &words))
}

fn words<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Vec<String> {
    items.into_iter().map(|w| exec_word(w.as_ref())).collect()
}

fn options(unit: &Unit, name: &FleetName, layout: Layout, opts: &RenderOptions) -> Vec<UnitOption> {
    let spec = &unit.spec;
    let container = container_name(&name.to_name());
    let mut o = Vec::new();

    let description = match layout {
        Layout::Global => format!("Kaylee unit {} (global)", unit.name),
        _ => format!("Kaylee unit {} (replica {})", unit.name, name.replica),
    };
    o.push(UnitOption::new("Unit", "Description", description));
    if !opts.network_unit.is_empty() {
        o.push(UnitOption::new(
            "Unit",
            "Requires",
            opts.network_unit.clone(),
        ));
        o.push(UnitOption::new("Unit", "After", opts.network_unit.clone()));
    }

    for f in &spec.env_files {
        o.push(UnitOption::new(
            "Service",
            "EnvironmentFile",
            escape_specifiers(f),
        ));
    }
    let timeout = unit.pull_timeout_secs();
    o.push(UnitOption::new(
        "Service",
        "TimeoutStartSec",
        (timeout + START_MARGIN_SECS).to_string(),
    ));
    for v in &spec.volumes {
        let mut w = words([DOCKER, "volume", "create"]);
        w.push(exec_word(&format!("--name={}", v.id)));
        w.push(exec_word(&format!("--driver={}", v.driver)));
        if !v.options.is_empty() {
            w.push(exec_word(&format!("--opt={}", v.options)));
        }
        o.push(exec("ExecStartPre", w));
    }
    o.push(exec("ExecStartPre", pull(unit, timeout)));
    o.push(exec(
        "ExecStartPre",
        words([&format!("-{DOCKER}"), "kill", &container]),
    ));
    o.push(exec(
        "ExecStartPre",
        words([&format!("-{DOCKER}"), "rm", &container]),
    ));

    o.push(exec("ExecStart", docker_run(unit, &container)));
    o.push(exec(
        "ExecStop",
        words([&format!("-{DOCKER}"), "stop", &container]),
    ));
    o.push(UnitOption::new(
        "Service",
        "SuccessExitStatus",
        DOCKER_STOP_STATUSES,
    ));
    o.push(UnitOption::new("Service", "Restart", "always"));
    o.push(UnitOption::new("Service", "RestartSec", "30"));

    for m in &spec.machine {
        o.push(UnitOption::new("X-Fleet", "MachineMetadata", m.clone()));
    }
    if let Some(id) = &spec.machine_id {
        o.push(UnitOption::new("X-Fleet", "MachineID", id.clone()));
    }
    if layout == Layout::Global {
        o.push(UnitOption::new("X-Fleet", "Global", "true"));
    }
    for c in conflicts(unit, name, layout) {
        o.push(UnitOption::new("X-Fleet", "Conflicts", c));
    }
    o
}

/// The `ExecStartPre=` that gets the image onto the host, by pull policy.
/// It must work with the Docker of fleet's era (1.12: no `docker run
/// --pull`, no `docker image inspect`, but `docker inspect --type=image`),
/// and systemd runs it without a shell, hence `sh -c` where a condition is
/// needed. The image is passed to the script as `$1`, never inside it, so
/// it needs no shell quoting; a pull is bounded by timeout(1).
fn pull(unit: &Unit, timeout: u32) -> Vec<String> {
    let image = unit.spec.image.as_str();
    let (kill_after, timeout) = (PULL_KILL_AFTER_SECS.to_string(), timeout.to_string());
    match unit.pull_policy() {
        PullPolicy::Always => words([TIMEOUT, "-k", &kill_after, &timeout, DOCKER, "pull", image]),
        PullPolicy::Missing => {
            let bounded = format!("{TIMEOUT} -k {kill_after} {timeout} {DOCKER} pull");
            let script = format!(
                "{DOCKER} inspect --type=image \"$1\" >/dev/null 2>&1 || exec {bounded} \"$1\""
            );
            words([SH, "-c", &script, "kaylee-pull", image])
        }
        // Without a pull, `docker run` would pull a missing image itself:
        // the check fails the start instead.
        PullPolicy::Never => words([DOCKER, "inspect", "--type=image", "--format={{.Id}}", image]),
    }
}

/// One word of the `docker run` command line.
enum Word {
    /// Every byte reaches docker as is.
    Literal(String),
    /// `${NAME}` in it is a reference systemd expands (`reference.rs`).
    Expanding(String),
}

/// `docker run` and its argv: the container's name and label, env,
/// volumes, docker args (each item split into words), image, cmd words.
/// Env values, docker args and cmd words may hold `${NAME}` references.
fn docker_run_words(unit: &Unit, container: &str) -> Vec<Word> {
    let spec = &unit.spec;
    let label = format!("kaylee.name={}", unit.name);
    let mut run: Vec<Word> = [DOCKER, "run", "--rm", "--name", container, "-l", &label]
        .into_iter()
        .map(|w| Word::Literal(w.to_string()))
        .collect();
    for e in &spec.env {
        run.push(Word::Literal("-e".into()));
        run.push(Word::Expanding(format!("{}={}", e.name, e.value)));
    }
    for v in &spec.volumes {
        run.push(Word::Literal("-v".into()));
        run.push(Word::Literal(format!("{}:{}", v.id, v.path)));
    }
    run.extend(unit.docker_args().into_iter().map(Word::Expanding));
    run.push(Word::Literal(spec.image.clone()));
    run.extend(unit.cmd_args().into_iter().map(Word::Expanding));
    run
}

fn docker_run(unit: &Unit, container: &str) -> Vec<String> {
    docker_run_words(unit, container)
        .iter()
        .map(|w| match w {
            Word::Literal(text) => exec_word(text),
            Word::Expanding(text) => exec_word_expanding(text),
        })
        .collect()
}

/// The argv `ExecStart=` gives the replica named `fleet_name`, as docker
/// receives it, with each `${NAME}` reference shown unexpanded (systemd
/// fills them in on the host): what `kaylee render -o json` shows.
pub fn docker_run_argv(unit: &Unit, fleet_name: &FleetName) -> Vec<String> {
    let container = container_name(&fleet_name.to_name());
    docker_run_words(unit, &container)
        .into_iter()
        .map(|w| match w {
            Word::Literal(text) => text,
            Word::Expanding(text) => reference::display(&text),
        })
        .collect()
}

fn conflicts(unit: &Unit, name: &FleetName, layout: Layout) -> Vec<String> {
    let prefix = &name.prefix;
    let mut out = match layout {
        // Any template: fleet then never puts two replicas of one group on
        // a host, old or new, so the limit holds through every rollout.
        Layout::Replicated {
            groups: Some(_), ..
        } => vec![format!("{prefix}:{}:*:{}:*.service", unit.name, name.group)],
        // No limit: a group of one, which only keeps the text's form.
        Layout::Replicated { groups: None, .. } => vec![format!(
            "{prefix}:{}:{}:{}:*.service",
            unit.name, name.spec_hash, name.group
        )],
        // Never two versions at once, and never two on one machine.
        Layout::Singleton | Layout::Pinned => vec![format!("{prefix}:{}:*.service", unit.name)],
        Layout::Global => Vec::new(),
    };
    for c in &unit.spec.conflicts {
        if c.ends_with(".service") || c.contains('*') {
            out.push(c.clone());
        } else {
            out.push(format!("{prefix}:{c}:*.service"));
        }
    }
    out
}
