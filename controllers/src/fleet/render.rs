//! Spec → fleet units (DESIGN §4): a pure function, so that every server
//! renders the same bytes and the planner can compare names and hashes.

use super::naming::{FleetName, container_name, group_id, spec_hash};
use super::quote::{escape_specifiers, exec_word, wrap_words};
use super::records::{UnitHash, unit_hash};
use super::unitfile::{UnitOption, serialize};
use crate::spec::{Layout, Unit};

const DOCKER: &str = "/usr/bin/docker";

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
    pub name: FleetName,
    pub text: String,
    pub hash: UnitHash,
}

/// The whole desired set of one Kaylee unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub spec_hash: String,
    pub layout: Layout,
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
    o.push(UnitOption::new("Service", "TimeoutStartSec", "0"));
    for v in &spec.volumes {
        let mut w = words([DOCKER, "volume", "create"]);
        w.push(exec_word(&format!("--name={}", v.id)));
        w.push(exec_word(&format!("--driver={}", v.driver)));
        if !v.options.is_empty() {
            w.push(exec_word(&format!("--opt={}", v.options)));
        }
        o.push(exec("ExecStartPre", w));
    }
    o.push(exec("ExecStartPre", words([DOCKER, "pull", &spec.image])));
    o.push(exec(
        "ExecStartPre",
        words([&format!("-{DOCKER}"), "kill", &container]),
    ));
    o.push(exec(
        "ExecStartPre",
        words([&format!("-{DOCKER}"), "rm", &container]),
    ));

    let label = format!("kaylee.name={}", unit.name);
    let mut run = words([DOCKER, "run", "--rm", "--name", &container, "-l", &label]);
    for e in &spec.env {
        run.push(exec_word("-e"));
        run.push(exec_word(&format!("{}={}", e.name, e.value)));
    }
    for v in &spec.volumes {
        run.push(exec_word("-v"));
        run.push(exec_word(&format!("{}:{}", v.id, v.path)));
    }
    run.extend(words(&spec.docker_args));
    run.push(exec_word(&spec.image));
    run.extend(words(unit.cmd_args()));
    o.push(exec("ExecStart", run));
    o.push(exec(
        "ExecStop",
        words([&format!("-{DOCKER}"), "stop", &container]),
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
