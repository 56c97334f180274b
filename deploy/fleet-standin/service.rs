//! The parts of a unit file that say how to run it (`[Unit]` dependencies,
//! `[Service]` commands, restart and timeouts), with systemd's defaults.

use crate::systemd::{Command, UnitFile};
use crate::timespan;
use std::time::Duration;

/// systemd's `DefaultRestartSec`.
const DEFAULT_RESTART_SEC: Duration = Duration::from_millis(100);
/// systemd's `DefaultTimeoutStartSec` and `DefaultTimeoutStopSec`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// `Restart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnAbort,
}

/// How a start attempt ended, for `Restart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit code 0, or SIGHUP/SIGINT/SIGTERM/SIGPIPE: clean for systemd.
    Clean,
    /// A non-zero exit code.
    Code(i32),
    /// Killed by another signal.
    Signal(i32),
    /// The start failed: an `ExecStartPre`, an environment file, a program
    /// that cannot be run, or the start timeout.
    StartFailed,
}

impl Restart {
    /// Whether systemd restarts a unit that ended with `exit`.
    pub fn applies(self, exit: Exit) -> bool {
        match self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnSuccess => exit == Exit::Clean,
            Restart::OnFailure => exit != Exit::Clean,
            Restart::OnAbnormal | Restart::OnAbort => matches!(exit, Exit::Signal(_)),
        }
    }
}

/// One `EnvironmentFile=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: String,
    /// Written with a leading `-`: a missing file is fine.
    pub optional: bool,
}

/// How to run a unit.
#[derive(Debug, Clone)]
pub struct Service {
    pub requires: Vec<String>,
    pub env_files: Vec<EnvFile>,
    pub start_pre: Vec<Command>,
    /// `None`: systemd refuses a service without `ExecStart=`.
    pub start: Option<Command>,
    pub stop: Vec<Command>,
    pub restart: Restart,
    pub restart_sec: Duration,
    /// `None`: no limit (`TimeoutStartSec=0` or `infinity`).
    pub timeout_start: Option<Duration>,
    pub timeout_stop: Duration,
    /// Options this stand-in does not carry out.
    pub ignored: Vec<String>,
}

impl Service {
    /// The service `file` describes.
    pub fn of(file: &UnitFile) -> Service {
        let mut s = Service {
            requires: Vec::new(),
            env_files: Vec::new(),
            start_pre: Vec::new(),
            start: None,
            stop: Vec::new(),
            restart: Restart::No,
            restart_sec: DEFAULT_RESTART_SEC,
            timeout_start: Some(DEFAULT_TIMEOUT),
            timeout_stop: DEFAULT_TIMEOUT,
            ignored: Vec::new(),
        };
        let mut start = Vec::new();
        for opt in &file.options {
            let value = opt.value.as_str();
            match (opt.section.as_str(), opt.key.as_str()) {
                ("Unit", "Requires" | "BindsTo" | "Requisite") => s
                    .requires
                    .extend(value.split_whitespace().map(str::to_string)),
                ("Service", "EnvironmentFile") => match value {
                    // An empty assignment resets the list, as in systemd.
                    "" => s.env_files.clear(),
                    v => s.env_files.push(match v.strip_prefix('-') {
                        Some(path) => EnvFile {
                            path: path.to_string(),
                            optional: true,
                        },
                        None => EnvFile {
                            path: v.to_string(),
                            optional: false,
                        },
                    }),
                },
                ("Service", "ExecStartPre") => commands(&mut s.start_pre, opt),
                ("Service", "ExecStart") => commands(&mut start, opt),
                ("Service", "ExecStop") => commands(&mut s.stop, opt),
                ("Service", "Restart") => {
                    s.restart = match value {
                        "always" => Restart::Always,
                        "on-success" => Restart::OnSuccess,
                        "on-failure" => Restart::OnFailure,
                        "on-abnormal" => Restart::OnAbnormal,
                        "on-abort" => Restart::OnAbort,
                        _ => Restart::No,
                    }
                }
                ("Service", "RestartSec") => {
                    if let Ok(d) = timespan::parse(value) {
                        s.restart_sec = d.unwrap_or(DEFAULT_RESTART_SEC);
                    }
                }
                ("Service", key @ ("TimeoutStartSec" | "TimeoutStopSec" | "TimeoutSec")) => {
                    // 0 and infinity both mean no limit.
                    let limit = timespan::parse(value)
                        .ok()
                        .map(|d| d.filter(|d| !d.is_zero()));
                    if let Some(limit) = limit {
                        if key != "TimeoutStopSec" {
                            s.timeout_start = limit;
                        }
                        if key != "TimeoutStartSec" {
                            s.timeout_stop = limit.unwrap_or(Duration::MAX);
                        }
                    }
                }
                ("Service", "Type") if value != "simple" => s.ignored.push(format!("Type={value}")),
                (
                    "Service",
                    key @ ("ExecStartPost" | "ExecReload" | "ExecStopPost" | "Environment"),
                ) => s.ignored.push(key.to_string()),
                _ => {}
            }
        }
        // Type=simple takes exactly one ExecStart command.
        s.start = start.into_iter().next();
        s
    }
}

/// Appends an `Exec…=` option's commands; an empty one resets the list.
fn commands(list: &mut Vec<Command>, opt: &crate::systemd::Opt) {
    if opt.value.is_empty() {
        list.clear();
    } else {
        list.extend(opt.commands.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd;

    #[test]
    fn reads_a_kaylee_unit() {
        let text = "[Unit]\nDescription=x\nRequires=flanneld.service\nAfter=flanneld.service\n\n\
                    [Service]\nEnvironmentFile=-/etc/a.env\nEnvironmentFile=/etc/b.env\nTimeoutStartSec=0\n\
                    ExecStartPre=/usr/bin/docker pull busybox\nExecStartPre=-/usr/bin/docker rm c\n\
                    ExecStart=/usr/bin/docker run --rm --name c busybox sleep 1\n\
                    ExecStop=-/usr/bin/docker stop c\nRestart=always\nRestartSec=30\n";
        let s = Service::of(&systemd::parse(text));
        assert_eq!(s.requires, ["flanneld.service"]);
        assert_eq!(
            s.env_files,
            [
                EnvFile {
                    path: "/etc/a.env".into(),
                    optional: true
                },
                EnvFile {
                    path: "/etc/b.env".into(),
                    optional: false
                }
            ]
        );
        assert_eq!(s.start_pre.len(), 2);
        assert_eq!(s.start_pre[1].prefixes, "-");
        assert_eq!(s.start.as_ref().map(|c| c.argv.len()), Some(8));
        assert_eq!(s.stop.len(), 1);
        assert_eq!(s.restart, Restart::Always);
        assert_eq!(s.restart_sec, Duration::from_secs(30));
        assert_eq!(s.timeout_start, None);
        assert_eq!(s.timeout_stop, DEFAULT_TIMEOUT);
        assert!(s.ignored.is_empty());
    }

    #[test]
    fn defaults_and_restart_rules() {
        let s = Service::of(&systemd::parse("[Service]\nExecStartPost=/bin/true\n"));
        assert!(s.start.is_none());
        assert_eq!(s.restart, Restart::No);
        assert_eq!(s.restart_sec, DEFAULT_RESTART_SEC);
        assert_eq!(s.ignored, ["ExecStartPost"]);
        assert!(Restart::Always.applies(Exit::Clean));
        assert!(Restart::OnFailure.applies(Exit::StartFailed));
        assert!(!Restart::OnFailure.applies(Exit::Clean));
        assert!(Restart::OnAbnormal.applies(Exit::Signal(9)));
        assert!(!Restart::No.applies(Exit::Code(1)));
    }
}
