//! Turns a positioned document tree into a [`Unit`], collecting every error
//! (not just the first) with its field path and position.

use super::error::{Pos, SpecError, SpecErrors};
use super::model::{EnvVar, OnFailure, PullPolicy, Spec, Unit, UpdateOrder, Volume};
use super::node::{Entry, Kind, Node};
use super::rules;

const ROOT_FIELDS: &[&str] = &["name", "spec"];
const SPEC_FIELDS: &[&str] = &[
    "replicas",
    "maxReplicasPerHost",
    "image",
    "pull",
    "pullTimeout",
    "cmd",
    "envFiles",
    "env",
    "volumes",
    "machine",
    "machineId",
    "dockerArgs",
    "global",
    "conflicts",
    "startupDelay",
    "minReadySeconds",
    "progressDeadline",
    "onFailure",
    "maxSurge",
    "updateOrder",
];
const ENV_FIELDS: &[&str] = &["name", "value"];
const VOLUME_FIELDS: &[&str] = &["id", "driver", "path", "options"];

/// Upper bounds that keep a typo (or an attack) from asking fleet for a
/// billion units.
pub const MAX_REPLICAS: u64 = 1000;
/// Bound of `minReadySeconds` (and its alias `startupDelay`).
pub const MAX_STARTUP_DELAY_SECS: u64 = 3600;
/// Bound of `progressDeadline`: a day.
pub const MAX_PROGRESS_DEADLINE_SECS: u64 = 86_400;
/// A pull may be given up to a day.
pub const MAX_PULL_TIMEOUT_SECS: u64 = 86_400;

pub(super) struct Decoder<'a> {
    source: &'a str,
    errors: Vec<SpecError>,
}

/// The fields of one mapping, looked up by name after unknown keys were
/// reported.
struct Fields<'n> {
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
            .filter(|n| n.kind != Kind::Null)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Decoder<'a> {
    pub(super) fn new(source: &'a str) -> Self {
        Decoder {
            source,
            errors: Vec::new(),
        }
    }

    pub(super) fn error(&mut self, path: &str, pos: Option<Pos>, message: impl Into<String>) {
        self.errors.push(SpecError {
            source: self.source.to_string(),
            field: path.to_string(),
            pos,
            message: message.into(),
        });
    }

    /// Checks a mapping's keys against the schema, reporting unknown ones.
    fn object<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                path,
                node.pos,
                format!("expected a mapping, found {}", node.kind.describe()),
            );
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) && !e.defines_anchor {
                let hint = match suggest(&e.key, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of: {}", allowed.join(", ")),
                };
                self.error(
                    &join(path, &e.key),
                    e.key_pos.or(node.pos),
                    format!("unknown field ({hint})"),
                );
            }
        }
        Some(Fields { entries })
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, .. } => {
                if text.contains('\0') {
                    self.error(path, node.pos, "contains a NUL character");
                    return None;
                }
                Some(text.clone())
            }
            other => {
                let found = other.describe();
                self.error(path, node.pos, format!("expected a string, found {found}"));
                None
            }
        }
    }

    fn int(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u32> {
        let parsed = match &node.kind {
            Kind::Scalar {
                text,
                quoted: false,
            } => text.parse::<i128>().ok(),
            _ => None,
        };
        match parsed {
            None => {
                self.error(path, node.pos, "expected a whole number");
                None
            }
            Some(n) if n < i128::from(min) || n > i128::from(max) => {
                self.error(
                    path,
                    node.pos,
                    format!("must be between {min} and {max}, got {n}"),
                );
                None
            }
            // In range and max ≤ u32::MAX, so the conversion holds.
            Some(n) => u32::try_from(n).ok(),
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar {
                text,
                quoted: false,
            } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => {
                    self.error(path, node.pos, "expected true or false");
                    None
                }
            },
            _ => {
                self.error(path, node.pos, "expected true or false");
                None
            }
        }
    }

    fn list<T>(
        &mut self,
        node: Option<&Node>,
        path: &str,
        mut item: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Vec<T> {
        let Some(node) = node else {
            return Vec::new();
        };
        let Kind::Seq(items) = &node.kind else {
            let found = node.kind.describe();
            self.error(path, node.pos, format!("expected a list, found {found}"));
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| item(self, n, &format!("{path}[{i}]")))
            .collect()
    }

    /// A string checked by `rule`, which returns why it is unacceptable.
    fn checked(
        &mut self,
        node: &Node,
        path: &str,
        rule: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let s = self.string(node, path)?;
        match rule(&s) {
            Ok(()) => Some(s),
            Err(why) => {
                self.error(path, node.pos, why);
                None
            }
        }
    }

    fn required<'n>(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        path: &str,
        at: &Node,
    ) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            self.error(&join(path, key), at.pos, "is required");
        }
        node
    }

    pub(super) fn unit(mut self, root: &Node) -> Result<Unit, SpecErrors> {
        let unit = self.unit_fields(root);
        if !self.errors.is_empty() {
            return Err(SpecErrors(self.errors));
        }
        let unit = unit.ok_or_else(|| SpecErrors::single(self.source, "", None, "invalid unit"))?;
        let mut checker = Decoder::new(self.source);
        rules::check_unit(&unit, &mut |path, msg| checker.error(path, None, msg));
        if checker.errors.is_empty() {
            Ok(unit)
        } else {
            Err(SpecErrors(checker.errors))
        }
    }

    fn unit_fields(&mut self, root: &Node) -> Option<Unit> {
        let fields = self.object(root, "", ROOT_FIELDS)?;
        let name = self
            .required(&fields, "name", "", root)
            .and_then(|n| self.checked(n, "name", rules::unit_name));
        let spec = self
            .required(&fields, "spec", "", root)
            .and_then(|n| self.spec(n));
        Some(Unit {
            name: name?,
            spec: spec?,
        })
    }

    fn spec(&mut self, node: &Node) -> Option<Spec> {
        let p = "spec";
        let f = self.object(node, p, SPEC_FIELDS)?;
        let before = self.errors.len();
        let count = |d: &mut Self, key: &str, max: u64| {
            f.get(key).and_then(|n| d.int(n, &join(p, key), 1, max))
        };
        let replicas = count(self, "replicas", MAX_REPLICAS);
        let max_replicas_per_host = count(self, "maxReplicasPerHost", MAX_REPLICAS);
        let image = self
            .required(&f, "image", p, node)
            .and_then(|n| self.checked(n, "spec.image", rules::image));
        let pull = f.get("pull").and_then(|n| self.pull(n, "spec.pull"));
        let pull_timeout = f
            .get("pullTimeout")
            .and_then(|n| self.seconds(n, "spec.pullTimeout", 1, MAX_PULL_TIMEOUT_SECS));
        let cmd = f
            .get("cmd")
            .and_then(|n| self.checked(n, "spec.cmd", rules::cmd));
        let env_files = self.list(f.get("envFiles"), "spec.envFiles", |d, n, path| {
            d.checked(n, path, rules::env_file)
        });
        let env = self.list(f.get("env"), "spec.env", Self::env_var);
        let volumes = self.list(f.get("volumes"), "spec.volumes", Self::volume);
        let machine = self.list(f.get("machine"), "spec.machine", |d, n, path| {
            d.checked(n, path, rules::machine_metadata)
        });
        let machine_id = f
            .get("machineId")
            .and_then(|n| self.checked(n, "spec.machineId", rules::machine_id));
        let docker_args = self.list(f.get("dockerArgs"), "spec.dockerArgs", |d, n, path| {
            d.checked(n, path, rules::docker_arg)
        });
        let global = f
            .get("global")
            .and_then(|n| self.boolean(n, "spec.global"))
            .unwrap_or(false);
        let conflicts = self.list(f.get("conflicts"), "spec.conflicts", |d, n, path| {
            d.checked(n, path, rules::conflict)
        });
        let min_ready_seconds = self.min_ready(&f);
        let progress_deadline = f
            .get("progressDeadline")
            .and_then(|n| self.seconds(n, "spec.progressDeadline", 1, MAX_PROGRESS_DEADLINE_SECS));
        let on_failure = f.get("onFailure").and_then(|n| {
            self.word(
                n,
                "spec.onFailure",
                &[
                    ("pause", OnFailure::Pause),
                    ("rollback", OnFailure::Rollback),
                ],
            )
        });
        let max_surge = count(self, "maxSurge", MAX_REPLICAS);
        let update_order = f.get("updateOrder").and_then(|n| {
            self.word(
                n,
                "spec.updateOrder",
                &[
                    ("start-first", UpdateOrder::StartFirst),
                    ("stop-first", UpdateOrder::StopFirst),
                ],
            )
        });
        if self.errors.len() != before {
            return None;
        }
        Some(Spec {
            replicas,
            max_replicas_per_host,
            image: image?,
            pull,
            pull_timeout,
            cmd,
            env_files,
            env,
            volumes,
            machine,
            machine_id,
            docker_args,
            global,
            conflicts,
            min_ready_seconds,
            progress_deadline,
            on_failure,
            max_surge,
            update_order,
        })
    }

    /// `minReadySeconds`, or its older name `startupDelay` (the original's,
    /// which meant the same pause); both at once is ambiguous.
    fn min_ready(&mut self, f: &Fields<'_>) -> Option<u32> {
        let read = |d: &mut Self, key: &str| {
            f.get(key)
                .and_then(|n| d.int(n, &join("spec", key), 0, MAX_STARTUP_DELAY_SECS))
        };
        match (f.get("minReadySeconds"), f.get("startupDelay")) {
            (Some(_), Some(alias)) => {
                self.error(
                    "spec.startupDelay",
                    alias.pos,
                    "is an older name of spec.minReadySeconds; give only one",
                );
                None
            }
            (Some(_), None) => read(self, "minReadySeconds"),
            (None, Some(_)) => read(self, "startupDelay"),
            (None, None) => None,
        }
    }

    /// One of a fixed set of words.
    fn word<T: Copy>(&mut self, node: &Node, path: &str, words: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, path)?;
        let found = words.iter().find(|(w, _)| *w == text).map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            self.error(
                path,
                node.pos,
                format!(
                    "expected one of: {}, got `{}`",
                    names.join(", "),
                    text.escape_debug()
                ),
            );
        }
        found
    }

    fn pull(&mut self, node: &Node, path: &str) -> Option<PullPolicy> {
        let text = self.string(node, path)?;
        let policy = match text.as_str() {
            "always" => PullPolicy::Always,
            "missing" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            other => {
                // Kubernetes' spellings are the likely mistake.
                let hint = match other {
                    "Always" => " (did you mean `always`?)",
                    "IfNotPresent" => " (did you mean `missing`?)",
                    "Never" => " (did you mean `never`?)",
                    _ => "",
                };
                self.error(
                    path,
                    node.pos,
                    format!(
                        "must be always, missing or never, got `{}`{hint}",
                        other.escape_debug()
                    ),
                );
                return None;
            }
        };
        Some(policy)
    }

    /// Whole seconds: a number, or a duration such as `90s`, `5m` or `1h`.
    fn seconds(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u32> {
        let Kind::Scalar { text, .. } = &node.kind else {
            let found = node.kind.describe();
            self.error(
                path,
                node.pos,
                format!("expected seconds or a duration like `5m`, found {found}"),
            );
            return None;
        };
        let secs = match text.parse::<i128>() {
            Ok(n) => n,
            Err(_) => match humantime::parse_duration(text) {
                Ok(d) if d.subsec_nanos() == 0 => i128::from(d.as_secs()),
                Ok(_) => {
                    self.error(path, node.pos, "must be whole seconds");
                    return None;
                }
                Err(e) => {
                    self.error(
                        path,
                        node.pos,
                        format!(
                            "expected seconds or a duration like `5m`, got `{}`{}",
                            text.escape_debug(),
                            duration_hint(&e)
                        ),
                    );
                    return None;
                }
            },
        };
        if secs < i128::from(min) || secs > i128::from(max) {
            self.error(
                path,
                node.pos,
                format!("must be between {min} and {max} seconds, got {secs}"),
            );
            return None;
        }
        u32::try_from(secs).ok()
    }

    fn env_var(&mut self, node: &Node, path: &str) -> Option<EnvVar> {
        let f = self.object(node, path, ENV_FIELDS)?;
        let name = self
            .required(&f, "name", path, node)
            .and_then(|n| self.checked(n, &join(path, "name"), rules::env_name));
        // An absent value is the empty string, as in `docker run -e NAME=`.
        let value = match f.get("value") {
            Some(n) => self.string(n, &join(path, "value")),
            None => Some(String::new()),
        };
        Some(EnvVar {
            name: name?,
            value: value?,
        })
    }

    fn volume(&mut self, node: &Node, path: &str) -> Option<Volume> {
        let f = self.object(node, path, VOLUME_FIELDS)?;
        let id = self
            .required(&f, "id", path, node)
            .and_then(|n| self.checked(n, &join(path, "id"), rules::volume_id));
        let driver = match f.get("driver") {
            Some(n) => self.checked(n, &join(path, "driver"), rules::volume_driver),
            None => Some("local".to_string()),
        };
        let vpath = self
            .required(&f, "path", path, node)
            .and_then(|n| self.checked(n, &join(path, "path"), rules::volume_path));
        let options = match f.get("options") {
            Some(n) => self.checked(n, &join(path, "options"), rules::argv_word),
            None => Some(String::new()),
        };
        Some(Volume {
            id: id?,
            driver: driver?,
            path: vpath?,
            options: options?,
        })
    }
}

/// The allowed field closest to a typo, if it is close enough to be a guess
/// worth printing: within 2 edits (Levenshtein, case ignored), or a quarter
/// of the field's length for long ones.
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(&key, &a.to_ascii_lowercase()), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// What humantime's error adds to "expected a duration" that helps the
/// author: the unit it did not know, or that the number is too large. Its
/// other errors ("expected number at 0") only restate the expectation.
fn duration_hint(e: &humantime::DurationError) -> String {
    match e {
        humantime::DurationError::UnknownUnit { unit, .. } => format!(
            " (unknown unit `{}`; units: s, m, h, d, ms)",
            unit.escape_debug()
        ),
        humantime::DurationError::NumberOverflow => " (the number is too large)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("replica", SPEC_FIELDS), Some("replicas"));
        assert_eq!(
            suggest("maxReplicaPerHost", SPEC_FIELDS),
            Some("maxReplicasPerHost")
        );
        assert_eq!(suggest("imagee", SPEC_FIELDS), Some("image"));
        assert_eq!(suggest("completely-else", SPEC_FIELDS), None);
    }
}
