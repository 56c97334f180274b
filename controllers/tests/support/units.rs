//! Generated unit specs for the render properties, and what rendering them
//! must produce, computed from the generated fields alone (never from the
//! library's model or quoting).

use proptest::prelude::*;
use serde_json::{Value, json};

pub const DOCKER: &str = "/usr/bin/docker";
/// fleet's bufio limit: a longer physical line makes fleet drop the unit.
pub const FLEET_LINE_LIMIT: usize = 2048;

/// Characters that mean something to systemd, fleet, a shell or a line reader.
const TRICKY: &[char] = &[
    '\'', '"', '$', '%', '\\', ';', '#', '\n', '\r', '\t', ' ', '{', '}', '=', '-', '@', '+', '!',
    ':', '[', ']', '*', '`', '&', '<', '>', '|', '(', ')', '~', '\u{1}', '\u{b}', '\u{c}',
    '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{2029}', '\u{feff}', 'é', '😀', 'a',
    'Z', '0', 'n', 'x', 'u',
];

#[derive(Debug, Clone)]
pub enum Layout {
    Replicated { replicas: u32, max: Option<u32> },
    Singleton,
    Global,
    Pinned(String),
}

#[derive(Debug, Clone)]
pub struct GenVolume {
    pub id: String,
    pub driver: String,
    pub path: String,
    pub options: String,
}

#[derive(Debug, Clone)]
pub struct GenUnit {
    pub name: String,
    pub image: String,
    pub layout: Layout,
    pub cmd: Option<String>,
    pub env_files: Vec<String>,
    pub env: Vec<(String, String)>,
    pub volumes: Vec<GenVolume>,
    pub machine: Vec<String>,
    pub docker_args: Vec<String>,
    pub conflicts: Vec<String>,
}

fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(TRICKY),
        1 => any::<char>().prop_filter("systemd cannot carry NUL", |c| *c != '\0'),
    ]
}

pub fn short_text() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..24).prop_map(|v| v.into_iter().collect())
}

/// `pattern` repeated to about `len` bytes (cut on a char boundary).
fn repeat_to(pattern: &str, len: usize) -> String {
    let mut s = pattern.repeat(len / pattern.len().max(1) + 1);
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// Long values: mostly around the per-word limit (accepted and wrapped, or
/// refused), a few up to 10 kB.
pub fn long_text() -> impl Strategy<Value = String> {
    let pattern = prop_oneof![
        2 => "[a-z0-9=.-]{1,8}",
        3 => short_text().prop_filter("a pattern to repeat", |s| !s.is_empty()),
    ];
    let len = prop_oneof![4 => 300usize..2100, 1 => 2100usize..10_240];
    (pattern, len).prop_map(|(p, n)| repeat_to(&p, n))
}

/// Very short words from the most dangerous characters, so that whole
/// words like `;`, `#`, `%n` or `\\` come up often.
fn tiny_word() -> impl Strategy<Value = String> {
    const TINY: &[char] = &[
        ';', '#', '%', '$', '\\', '"', '\'', '-', '@', '!', '+', ':', '{', '}', ' ', '\n', 'n',
    ];
    prop::collection::vec(prop::sample::select(TINY), 0..3).prop_map(|v| v.into_iter().collect())
}

pub fn value() -> impl Strategy<Value = String> {
    prop_oneof![8 => short_text(), 2 => tiny_word(), 1 => long_text()]
}

/// A few arbitrary docker args, or many short plain ones that make
/// `ExecStart=` wrap at every possible position near the line limit.
fn docker_args() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        6 => prop::collection::vec(value(), 0..4),
        1 => prop::collection::vec("[a-z0-9=.-]{1,16}", 100..400),
    ]
}

fn cmd() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        // Well-formed: arbitrary words joined with shell quoting.
        3 => prop::collection::vec(value(), 0..4)
            .prop_map(|w| shlex::try_join(w.iter().map(String::as_str)).ok()),
        // Anything at all: may not split (an unbalanced quote).
        2 => value().prop_map(Some),
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => (1u32..=3, prop::option::of(1u32..=3))
            .prop_map(|(replicas, max)| Layout::Replicated { replicas, max }),
        1 => Just(Layout::Singleton),
        1 => Just(Layout::Global),
        1 => "[a-f0-9]{32}".prop_map(Layout::Pinned),
    ]
}

fn volume() -> impl Strategy<Value = GenVolume> {
    (
        "[a-z0-9][a-z0-9_.-]{0,10}",
        prop_oneof![Just("local".to_string()), "[a-z][a-z0-9_.:/-]{0,12}"],
        "/[^\\x00-\\x1f\\x7f-\\u{9f}:,]{0,20}",
        prop_oneof![Just(String::new()), value()],
    )
        .prop_map(|(id, driver, path, options)| GenVolume {
            id,
            driver,
            path,
            options,
        })
}

pub fn unit() -> impl Strategy<Value = GenUnit> {
    let env = prop::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,8}", value()), 0..4);
    let volumes = prop::collection::vec(volume(), 0..3);
    let env_files = prop::collection::vec("-?/[a-z0-9%._-]{1,12}(/[a-z0-9%._-]{1,8})?", 0..3);
    let machine = prop::collection::vec("[a-z][a-z0-9_.-]{0,6}=[a-z0-9_.:/@+-]{1,8}", 0..3);
    let conflicts = prop::collection::vec(
        prop_oneof![
            "[a-z0-9][a-z0-9_.-]{0,10}",
            "[a-z0-9_.:@-]{1,10}\\*[a-z0-9_.:@*?-]{0,8}",
            "[a-z0-9_.:@-]{1,10}\\.service",
        ],
        0..3,
    );
    let names = (
        "[A-Za-z0-9][A-Za-z0-9_.-]{0,20}",
        "[a-z0-9][a-z0-9._/:@-]{0,30}",
    );
    let lists = (env, volumes, env_files, machine, conflicts);
    let args = docker_args();
    (names, layout(), cmd(), lists, args).prop_map(
        |((name, image), layout, cmd, (env, volumes, env_files, machine, conflicts), args)| {
            // Names must be unique: suffix each with its index.
            let env = env
                .into_iter()
                .enumerate()
                .map(|(i, (n, v))| (format!("{n}_{i}"), v))
                .collect();
            let volumes = volumes
                .into_iter()
                .enumerate()
                .map(|(i, v)| GenVolume {
                    id: format!("{}-{i}", v.id),
                    ..v
                })
                .collect();
            let conflicts = match layout {
                Layout::Global => Vec::new(), // fleet refuses conflicts on global units
                _ => conflicts,
            };
            GenUnit {
                name,
                image,
                layout,
                cmd,
                env_files,
                env,
                volumes,
                machine,
                docker_args: args,
                conflicts,
            }
        },
    )
}

impl GenUnit {
    pub fn to_json(&self) -> String {
        let mut spec = serde_json::Map::new();
        spec.insert("image".into(), json!(self.image));
        match &self.layout {
            Layout::Replicated { replicas, max } => {
                spec.insert("replicas".into(), json!(replicas));
                if let Some(m) = max {
                    spec.insert("maxReplicasPerHost".into(), json!(m));
                }
            }
            Layout::Singleton => {}
            Layout::Global => {
                spec.insert("global".into(), json!(true));
            }
            Layout::Pinned(id) => {
                spec.insert("machineId".into(), json!(id));
            }
        }
        if let Some(c) = &self.cmd {
            spec.insert("cmd".into(), json!(c));
        }
        let env: Vec<Value> = (self.env.iter())
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        let volumes: Vec<Value> = (self.volumes.iter())
            .map(|v| json!({"id": v.id, "driver": v.driver, "path": v.path, "options": v.options}))
            .collect();
        spec.insert("env".into(), json!(env));
        spec.insert("volumes".into(), json!(volumes));
        spec.insert("envFiles".into(), json!(self.env_files));
        spec.insert("machine".into(), json!(self.machine));
        spec.insert("dockerArgs".into(), json!(self.docker_args));
        spec.insert("conflicts".into(), json!(self.conflicts));
        json!({"name": self.name, "spec": spec}).to_string()
    }

    pub fn replicas(&self) -> u32 {
        match self.layout {
            Layout::Replicated { replicas, .. } => replicas,
            _ => 1,
        }
    }

    /// The intended argv of `cmd`: split like a POSIX shell.
    pub fn cmd_words(&self) -> Option<Vec<String>> {
        match &self.cmd {
            None => Some(Vec::new()),
            Some(c) => shlex::split(c),
        }
    }

    /// `(section, key)` of every option the unit text must hold, in order.
    pub fn expected_keys(&self) -> Vec<(String, String)> {
        let mut k: Vec<(&str, &str)> = vec![
            ("Unit", "Description"),
            ("Unit", "Requires"),
            ("Unit", "After"),
        ];
        k.extend(
            self.env_files
                .iter()
                .map(|_| ("Service", "EnvironmentFile")),
        );
        k.push(("Service", "TimeoutStartSec"));
        k.extend(self.volumes.iter().map(|_| ("Service", "ExecStartPre")));
        k.extend([("Service", "ExecStartPre"); 3]);
        k.extend([
            ("Service", "ExecStart"),
            ("Service", "ExecStop"),
            ("Service", "Restart"),
            ("Service", "RestartSec"),
        ]);
        k.extend(self.machine.iter().map(|_| ("X-Fleet", "MachineMetadata")));
        match self.layout {
            Layout::Pinned(_) => k.push(("X-Fleet", "MachineID")),
            Layout::Global => k.push(("X-Fleet", "Global")),
            _ => {}
        }
        if !matches!(self.layout, Layout::Global) {
            k.push(("X-Fleet", "Conflicts"));
        }
        k.extend(self.conflicts.iter().map(|_| ("X-Fleet", "Conflicts")));
        (k.into_iter())
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect()
    }

    /// The `ExecStart=` argv of the replica whose container is `container`.
    pub fn expected_run(&self, container: &str) -> Vec<String> {
        let label = format!("kaylee.name={}", self.name);
        let mut argv: Vec<String> = [DOCKER, "run", "--rm", "--name", container, "-l", &label]
            .map(String::from)
            .to_vec();
        for (n, v) in &self.env {
            argv.extend(["-e".to_string(), format!("{n}={v}")]);
        }
        for v in &self.volumes {
            argv.extend(["-v".to_string(), format!("{}:{}", v.id, v.path)]);
        }
        argv.extend(self.docker_args.iter().cloned());
        argv.push(self.image.clone());
        argv.extend(self.cmd_words().unwrap_or_default());
        argv
    }

    /// `(prefixes, argv)` of every `ExecStartPre=`, in order.
    pub fn expected_pre(&self, container: &str) -> Vec<(&'static str, Vec<String>)> {
        let own = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut pre: Vec<(&str, Vec<String>)> = (self.volumes.iter())
            .map(|v| {
                let mut w = own(&[DOCKER, "volume", "create"]);
                w.push(format!("--name={}", v.id));
                w.push(format!("--driver={}", v.driver));
                if !v.options.is_empty() {
                    w.push(format!("--opt={}", v.options));
                }
                ("", w)
            })
            .collect();
        pre.push(("", own(&[DOCKER, "pull", &self.image])));
        pre.push(("-", own(&[DOCKER, "kill", container])));
        pre.push(("-", own(&[DOCKER, "rm", container])));
        pre
    }

    /// Every `Conflicts=` value of a replica in conflict group `group`.
    pub fn expected_conflicts(&self, spec_hash: &str, group: &str) -> Vec<String> {
        let own = match self.layout {
            // A per-host limit holds across templates: any spec hash.
            Layout::Replicated { max: Some(_), .. } => {
                Some(format!("k:{}:*:{group}:*.service", self.name))
            }
            Layout::Replicated { max: None, .. } => {
                Some(format!("k:{}:{spec_hash}:{group}:*.service", self.name))
            }
            Layout::Singleton | Layout::Pinned(_) => Some(format!("k:{}:*.service", self.name)),
            Layout::Global => None,
        };
        let extra = self.conflicts.iter().map(|c| {
            if c.ends_with(".service") || c.contains('*') {
                c.clone()
            } else {
                format!("k:{c}:*.service")
            }
        });
        own.into_iter().chain(extra).collect()
    }
}

/// fleet's glob (Go `path.Match` for names without `/`): `*` and `?`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}
