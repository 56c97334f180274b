//! The typed unit model. Its serde form is the canonical JSON that
//! `kaylee run` stores in `/kaylee/units/<name>`: defaults that change nothing
//! are omitted, and `replicas` is kept only when the operator gave it, since
//! its absence means "singleton".

use serde::Serialize;
use std::time::Duration;

/// One Kaylee unit: a name and what to run, as read from a YAML file or
/// from `/kaylee/units/<name>` (see [`crate::spec::from_yaml`] and
/// [`crate::spec::from_json`]); always valid once built by those readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$` ([`crate::spec::rules::unit_name`]):
    /// it is part of every fleet unit name, container name and etcd key of
    /// the unit, so it identifies the unit; renaming one makes another unit.
    pub name: String,
    /// What runs, where and how it is replaced.
    pub spec: Spec,
}

/// The `spec` of a unit document. Field names are the document's in camelCase
/// (`maxReplicasPerHost`…); lists default to empty and options to absent,
/// and neither is written to the canonical JSON then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Number of fleet units, `1..=`[`MAX_REPLICAS`](crate::spec::MAX_REPLICAS).
    /// `None` is not "1" but a singleton ([`Layout::Singleton`]): one unit,
    /// replaced stop-first, that conflicts with every version of itself.
    /// Ignored for `global` and `machineId` units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// At most this many replicas on one machine (`1..=1000`); `None`: no
    /// limit. Enforced with fleet `Conflicts=` groups (replica `i` is in
    /// group `i mod n`), so it needs `replicas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_host: Option<u32>,
    /// Docker image reference, `[registry[:port]/]path[:tag][@digest]`, at
    /// most 512 bytes ([`crate::spec::rules::image`]); passed to
    /// `docker run` and `docker pull` as is.
    pub image: String,
    /// When the image is pulled; absent: [`Unit::pull_policy`]'s default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// Seconds a pull may take; absent: [`DEFAULT_PULL_TIMEOUT_SECS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_timeout: Option<u32>,
    /// Arguments after the image, as one string split like a POSIX shell
    /// would ([`Unit::cmd_args`]); `None`: the image's own `CMD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// One systemd `EnvironmentFile=` each: an absolute path, `-`-prefixed
    /// when the file may be missing (systemd.exec(5)). They are also what
    /// `${NAME}` references in `env`, `dockerArgs` and `cmd` are filled from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<String>,
    /// The container's environment, one `docker run -e NAME=value` each, in
    /// order; names are unique.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Docker volumes created before the start and mounted into the
    /// container; ids are unique.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// fleet `MachineMetadata=` constraints, `key=value` each: the unit runs
    /// only on machines whose metadata match all of them; empty: any machine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub machine: Vec<String>,
    /// fleet `MachineID=`: pins the unit to that one machine
    /// ([`Layout::Pinned`], one unit); `None`: fleet chooses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// Extra `docker run` arguments before the image; each item is split into
    /// words like `cmd` ([`Unit::docker_args`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docker_args: Vec<String>,
    /// One fleet unit with `Global=true`, which fleet runs on every machine
    /// matching `machine` ([`Layout::Global`]); `replicas` does not apply.
    #[serde(skip_serializing_if = "is_false")]
    pub global: bool,
    /// Extra fleet `Conflicts=`: a Kaylee unit name `x` becomes
    /// `<prefix>:x:*.service` (never beside any replica of `x`); a fleet glob
    /// (ends in `.service` or holds `*`) is passed as is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Seconds a replica must stay ready before it counts as available
    /// (Kubernetes' `minReadySeconds`); `startupDelay` is read as an alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
    /// Seconds a rollout may go without a new replica becoming available
    /// before it stops (Kubernetes' `progressDeadlineSeconds`); unset: the
    /// server's `--start-timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<u32>,
    /// What a stopped rollout does (Swarm's `update_config.failure_action`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// New replicas that may be on their way at once beyond `replicas`
    /// during a start-first rollout (Kubernetes' `maxSurge`); unset: 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<u32>,
    /// Whether a rollout starts a new replica before stopping an old one
    /// (Swarm's `update_config.order`); unset: start-first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_order: Option<UpdateOrder>,
}

/// What a rollout does when no new replica becomes available within its
/// progress deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Stop: keep every old replica, report `failed`, wait for a new spec.
    #[default]
    Pause,
    /// Put back the last revision that was fully available.
    Rollback,
}

/// The order of the two steps that replace one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Start the new replica, stop an old one once the new one is available:
    /// availability never drops below `replicas`; needs room for one more.
    #[default]
    StartFirst,
    /// Stop an old replica, then start its replacement: what a full cluster
    /// needs; availability may drop to `replicas - 1`.
    StopFirst,
}

/// How a unit's fleet units are replaced, from its rollout fields with
/// their defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPolicy {
    /// How long a replica must stay ready without a break before it counts
    /// as available (`minReadySeconds`; zero: as soon as it is ready).
    pub min_ready: Duration,
    /// How long a rollout may go without a new replica becoming available
    /// before it stops (`progressDeadline`, else the server's
    /// `--start-timeout`).
    pub progress_deadline: Duration,
    /// What a stopped rollout does (`onFailure`; default: pause).
    pub on_failure: OnFailure,
    /// New replicas on their way at once beyond `replicas` in a start-first
    /// rollout (`maxSurge`, default 1). At least 1: a stored 0 counts as 1.
    pub max_surge: u32,
    /// Whether a new replica starts before or after an old one stops
    /// (`updateOrder`; default: start-first).
    pub order: UpdateOrder,
}

/// When a replica's start pulls its image: Kubernetes' `imagePullPolicy`
/// (`Always`, `IfNotPresent`, `Never`) under shorter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull at every start (a moving tag such as `latest`).
    Always,
    /// Pull only when the host does not have the image.
    Missing,
    /// Never pull: the image must already be on the host (`docker load`,
    /// built there, an air-gapped cluster); a start without it fails.
    Never,
}

impl PullPolicy {
    /// The spelling in unit files and in the canonical JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Missing => "missing",
            PullPolicy::Never => "never",
        }
    }
}

/// How long a pull may take unless `pullTimeout` says otherwise: 5 minutes.
pub const DEFAULT_PULL_TIMEOUT_SECS: u32 = 300;

fn is_false(b: &bool) -> bool {
    !*b
}

/// One variable of the container's environment: `docker run -e NAME=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// Letters, digits and `_`, not starting with a digit, at most 255
    /// bytes ([`crate::spec::rules::env_name`]); unique within a unit.
    pub name: String,
    /// Any text without NUL; empty when the document gives none. Passed
    /// literally except for `${NAME}` references, which systemd fills in
    /// from the unit's `envFiles`.
    pub value: String,
}

/// A docker volume: created before every start with
/// `docker volume create --name=<id> --driver=<driver> [--opt=<options>]`
/// and mounted with `-v <id>:<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// The docker volume name: letters, digits and `_.-`, at most 128 bytes;
    /// unique within a unit. A `local` volume is per host: each replica's
    /// host has its own.
    pub id: String,
    /// The volume driver; `local` when the document gives none.
    pub driver: String,
    /// Absolute mount point inside the container, without `:` or `,` (the
    /// separators of docker's `-v`).
    pub path: String,
    /// Driver options passed as one `--opt=<options>`; empty: no `--opt`.
    pub options: String,
}

/// How a unit's fleet units are laid out and replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `replicas` given: N units in conflict groups, rolled surge-one.
    Replicated {
        /// The number of fleet units, `spec.replicas`.
        replicas: u32,
        /// `spec.maxReplicasPerHost`: that many conflict groups, replica `i`
        /// in group `i mod groups`, so a host holds at most one of each;
        /// `None`: no per-host limit (each replica a group of its own).
        groups: Option<u32>,
    },
    /// No `replicas`: one unit that conflicts with every version of itself.
    Singleton,
    /// `global: true`: one fleet unit fleet runs on every matching machine.
    Global,
    /// `machineId`: one unit pinned to one machine.
    Pinned,
}

impl Layout {
    /// Whether an update must remove the old unit before adding the new one
    /// (there is never room, or never leave, for two copies at once).
    pub fn replaces_in_place(self) -> bool {
        !matches!(self, Layout::Replicated { .. })
    }
}

impl Unit {
    /// Which layout the spec asks for: `global` first, then `machineId`,
    /// then `replicas`; none of them: a singleton.
    pub fn layout(&self) -> Layout {
        let s = &self.spec;
        if s.global {
            Layout::Global
        } else if s.machine_id.is_some() {
            Layout::Pinned
        } else if let Some(replicas) = s.replicas {
            Layout::Replicated {
                replicas,
                groups: s.max_replicas_per_host,
            }
        } else {
            Layout::Singleton
        }
    }

    /// The number of fleet units this unit asks for.
    pub fn desired_replicas(&self) -> u32 {
        match self.layout() {
            Layout::Replicated { replicas, .. } => replicas,
            _ => 1,
        }
    }

    /// The pull policy in effect: `pull` when given, else Kubernetes'
    /// `imagePullPolicy` default: `always` when the tag is `latest`, or when
    /// there is neither a tag nor a digest; otherwise (another tag, or only
    /// a digest) `missing`.
    pub fn pull_policy(&self) -> PullPolicy {
        self.spec
            .pull
            .unwrap_or_else(|| match image_tag(&self.spec.image) {
                ImageTag::Latest => PullPolicy::Always,
                ImageTag::Pinned => PullPolicy::Missing,
            })
    }

    /// Seconds a pull may take.
    pub fn pull_timeout_secs(&self) -> u32 {
        self.spec.pull_timeout.unwrap_or(DEFAULT_PULL_TIMEOUT_SECS)
    }

    /// The argv words of `dockerArgs`: each item split like a POSIX shell
    /// would (quotes group words, no expansion), so `["-p 8080:80"]` and
    /// `["-p", "8080:80"]` are one argv. Validation guarantees each splits.
    pub fn docker_args(&self) -> Vec<String> {
        self.spec
            .docker_args
            .iter()
            .flat_map(|item| shlex::split(item).unwrap_or_default())
            .collect()
    }

    /// The argv words of `cmd`, split like a POSIX shell would (quotes and
    /// backslashes, no expansion). Validation guarantees it splits.
    pub fn cmd_args(&self) -> Vec<String> {
        self.spec
            .cmd
            .as_deref()
            .and_then(shlex::split)
            .unwrap_or_default()
    }

    /// The rollout fields with their defaults; `default_deadline` is the
    /// server's `--start-timeout`.
    pub fn rollout(&self, default_deadline: Duration) -> RolloutPolicy {
        let s = &self.spec;
        RolloutPolicy {
            min_ready: Duration::from_secs(u64::from(s.min_ready_seconds.unwrap_or(0))),
            progress_deadline: s
                .progress_deadline
                .map_or(default_deadline, |d| Duration::from_secs(u64::from(d))),
            on_failure: s.on_failure.unwrap_or_default(),
            max_surge: s.max_surge.unwrap_or(1).max(1),
            order: s.update_order.unwrap_or_default(),
        }
    }

    /// The spec without what never reaches a unit's text (the replica
    /// count and the rollout fields): what the spec hash is taken over, so
    /// that scaling or changing how rollouts go restarts nothing.
    pub fn template(&self) -> Spec {
        Spec {
            replicas: None,
            min_ready_seconds: None,
            progress_deadline: None,
            on_failure: None,
            max_surge: None,
            update_order: None,
            ..self.spec.clone()
        }
    }

    /// Canonical JSON, as stored in etcd.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, integers and booleans cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

enum ImageTag {
    /// `:latest`, or neither tag nor digest (docker then means `latest`).
    Latest,
    /// Any other tag, or a digest alone.
    Pinned,
}

/// Reads the tag of a docker image reference
/// (`[registry[:port]/]path[:tag][@digest]`): the tag is after the last `:`
/// of the last path component, so a registry's port is never taken for
/// one. Kubernetes reads it the same way (`parsers.ParseImageName`).
fn image_tag(image: &str) -> ImageTag {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        None if digest => ImageTag::Pinned,
        None => ImageTag::Latest,
        Some((_, "latest")) => ImageTag::Latest,
        Some(_) => ImageTag::Pinned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(image: &str) -> PullPolicy {
        Unit {
            name: "u".into(),
            spec: Spec {
                image: image.into(),
                ..Spec::default()
            },
        }
        .pull_policy()
    }

    #[test]
    fn the_default_policy_follows_the_tag_like_kubernetes() {
        for image in [
            "busybox",
            "busybox:latest",
            "registry.local:5000/team/app",
            "registry.local:5000/team/app:latest",
        ] {
            assert_eq!(policy(image), PullPolicy::Always, "{image}");
        }
        for image in [
            "busybox:1.36",
            "registry.local:5000/team/app:2",
            "app@sha256:abc",
        ] {
            assert_eq!(policy(image), PullPolicy::Missing, "{image}");
        }
        // A `latest` tag asks for `always` even beside a digest, as in
        // Kubernetes.
        assert_eq!(policy("app:latest@sha256:abc"), PullPolicy::Always);
    }
}
