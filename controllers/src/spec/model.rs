//! The typed unit model. Its serde form is the canonical JSON that
//! `kaylee run` stores in `/kaylee/units/<name>`: defaults that change nothing
//! are omitted, and `replicas` is kept only when the operator gave it, since
//! its absence means "singleton".

use serde::Serialize;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_delay: Option<u32>,
}

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

    /// The argv words of `cmd`, split like a POSIX shell would (quotes and
    /// backslashes, no expansion). Validation guarantees it splits.
    pub fn cmd_args(&self) -> Vec<String> {
        self.spec
            .cmd
            .as_deref()
            .and_then(shlex::split)
            .unwrap_or_default()
    }

    /// Canonical JSON, as stored in etcd.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, integers and booleans cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
