//! The typed unit model. Its serde form is the canonical JSON that
//! `kaylee run` stores in `/kaylee/units/<name>`: defaults that change nothing
//! are omitted, and `replicas` is kept only when the operator gave it, since
//! its absence means "singleton".

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub name: String,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_host: Option<u32>,
    pub image: String,
    /// When the image is pulled; absent: [`Unit::pull_policy`]'s default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// Seconds a pull may take; absent: [`DEFAULT_PULL_TIMEOUT_SECS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub machine: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docker_args: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub global: bool,
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
    pub min_ready: Duration,
    pub progress_deadline: Duration,
    pub on_failure: OnFailure,
    /// At least 1.
    pub max_surge: u32,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub id: String,
    pub driver: String,
    pub path: String,
    pub options: String,
}

/// How a unit's fleet units are laid out and replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `replicas` given: N units in conflict groups, rolled surge-one.
    Replicated { replicas: u32, groups: Option<u32> },
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
