//! Generated unit specs for the render properties, and what rendering them
//! must produce, computed from the generated fields alone (never from the
//! library's model or quoting).

pub use super::words::expected_word;
use proptest::prelude::*;
use serde_json::{Value, json};

pub const DOCKER: &str = "/usr/bin/docker";
/// What the unit's start may take beyond the pull (TimeoutStartSec).
pub const START_MARGIN_SECS: u32 = 120;
pub const DEFAULT_PULL_TIMEOUT_SECS: u32 = 300;

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
    /// `always`, `missing`, `never`, or absent (the default by tag).
    pub pull: Option<String>,
    pub pull_timeout: Option<u32>,
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

/// `${NAME}` references, their `$${NAME}` escape, and near misses that
/// must stay literal.
fn dollar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\$\\{[A-Za-z_][A-Za-z0-9_]{0,6}\\}",
        2 => "\\$\\$\\{[A-Za-z_][A-Za-z0-9_]{0,4}\\}",
        1 => "\\$\\{[^}\\x00]{0,4}\\}?",
        1 => "\\$+[A-Za-z0-9{}]{0,3}",
    ]
}

/// Text with references and near misses among tricky characters.
fn referring_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![short_text(), dollar_text()], 1..4)
        .prop_map(|parts| parts.concat())
}

pub fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => short_text(),
        2 => tiny_word(),
        1 => long_text(),
        3 => referring_text(),
    ]
}

/// Docker args: items that are shell-quoted words (one or several per
/// item), a few arbitrary items (which may not split), or many short plain
/// ones that make `ExecStart=` wrap at every possible position near the
/// line limit.
fn docker_args() -> impl Strategy<Value = Vec<String>> {
    let quoted_item = prop::collection::vec(value(), 1..3)
        .prop_map(|w| shlex::try_join(w.iter().map(String::as_str)).unwrap_or_default());
    let item = prop_oneof![4 => quoted_item, 1 => value()];
    prop_oneof![
        6 => prop::collection::vec(item, 0..4),
        1 => prop::collection::vec("[a-z0-9=.-]{1,16}", 100..400),
    ]
}

fn pull() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(&["always", "missing", "never"][..]).prop_map(|p| Some(p.to_string())),
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
    let pulls = (pull(), prop::option::of(1u32..=86_400));
    (names, layout(), cmd(), lists, args, pulls).prop_map(
        |(
            (name, image),
            layout,
            cmd,
            (env, volumes, env_files, machine, conflicts),
            args,
            (pull, pull_timeout),
        )| {
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
            GenUnit {
                name,
                image,
                pull,
                pull_timeout,
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
        if let Some(p) = &self.pull {
            spec.insert("pull".into(), json!(p));
        }
        if let Some(t) = self.pull_timeout {
            spec.insert("pullTimeout".into(), json!(t));
        }
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

    /// The intended words of `cmd`: split like a POSIX shell.
    pub fn cmd_words(&self) -> Option<Vec<String>> {
        match &self.cmd {
            None => Some(Vec::new()),
            Some(c) => shlex::split(c),
        }
    }

    /// The intended words of the docker args: each item split like a POSIX
    /// shell; `None` if an item does not split.
    pub fn docker_words(&self) -> Option<Vec<String>> {
        let mut words = Vec::new();
        for item in &self.docker_args {
            words.extend(shlex::split(item)?);
        }
        Some(words)
    }

    /// The pull policy in effect: the given one, else Kubernetes' default
    /// (`always` for a `latest` tag or neither tag nor digest).
    pub fn pull_policy(&self) -> String {
        if let Some(p) = &self.pull {
            return p.clone();
        }
        let (name, digest) = match self.image.split_once('@') {
            Some((n, _)) => (n, true),
            None => (self.image.as_str(), false),
        };
        let last = name.rsplit('/').next().unwrap_or(name);
        let latest = match last.split_once(':') {
            Some((_, tag)) => tag == "latest",
            None => !digest,
        };
        if latest { "always" } else { "missing" }.to_string()
    }

    pub fn pull_timeout(&self) -> u32 {
        self.pull_timeout.unwrap_or(DEFAULT_PULL_TIMEOUT_SECS)
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
            ("Service", "SuccessExitStatus"),
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
            argv.extend(["-e".to_string(), expected_word(&format!("{n}={v}"))]);
        }
        for v in &self.volumes {
            argv.extend(["-v".to_string(), format!("{}:{}", v.id, v.path)]);
        }
        let args = self.docker_words().unwrap_or_default();
        argv.extend(args.iter().map(|w| expected_word(w)));
        argv.push(self.image.clone());
        let cmd = self.cmd_words().unwrap_or_default();
        argv.extend(cmd.iter().map(|w| expected_word(w)));
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
        let timeout = self.pull_timeout().to_string();
        let pull = match self.pull_policy().as_str() {
            "always" => own(&[
                "/usr/bin/timeout",
                "-k",
                "10",
                &timeout,
                DOCKER,
                "pull",
                &self.image,
            ]),
            "missing" => {
                let script = format!(
                    "{DOCKER} inspect --type=image \"$1\" >/dev/null 2>&1 || \
                     exec /usr/bin/timeout -k 10 {timeout} {DOCKER} pull \"$1\""
                );
                own(&["/bin/sh", "-c", &script, "kaylee-pull", &self.image])
            }
            _ => own(&[
                DOCKER,
                "inspect",
                "--type=image",
                "--format={{.Id}}",
                &self.image,
            ]),
        };
        pre.push(("", pull));
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
