//! Running one `Exec…=` command as systemd would: the argv after `$`
//! substitution, the program found (with a fallback for the units'
//! `/usr/bin/docker`), in a process group of its own, its output in this
//! process's log, and killed when this process dies.

use crate::env::substitute;
use crate::problems::Problems;
use crate::service::Exit;
use crate::systemd::Command as UnitCommand;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A command ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub program: String,
    pub args: Vec<String>,
    /// `-` prefix: a failure is ignored.
    pub ignore_failure: bool,
}

impl Prepared {
    /// The command line, for logs.
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The image of a plain `docker pull IMAGE`.
    pub fn pulled_image(&self) -> Option<&str> {
        let docker = Path::new(&self.program).file_name()? == "docker";
        match self.args.as_slice() {
            [pull, image] if docker && pull == "pull" => Some(image),
            _ => None,
        }
    }
}

/// `cmd` with the unit's environment substituted (unless its `:` prefix
/// says not to) and its program resolved.
pub fn prepare(cmd: &UnitCommand, env: &BTreeMap<String, String>, problems: &Problems) -> Prepared {
    let argv = if cmd.prefixes.contains(':') {
        cmd.words.clone()
    } else {
        substitute(&cmd.words, env)
    };
    let (program, args) = match argv.split_first() {
        Some((p, rest)) => (resolve(p, problems), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Prepared {
        program,
        args,
        ignore_failure: cmd.prefixes.contains('-'),
    }
}

/// The program to run for `program`: as written, or, when an absolute path
/// does not exist here (the units say `/usr/bin/docker`; docker may be in
/// `/usr/local/bin`), the same name found on `PATH` (logged once).
pub fn resolve(program: &str, problems: &Problems) -> String {
    let path = Path::new(program);
    if !program.contains('/') || path.exists() {
        return program.to_string();
    }
    let found = path.file_name().and_then(|base| on_path(Path::new(base)));
    match found {
        Some(found) => {
            let found = found.display().to_string();
            problems.notice(
                &format!("fallback {program}"),
                format!("{program} does not exist here: running {found} (found on PATH) instead"),
            );
            found
        }
        None => program.to_string(),
    }
}

/// The first executable file `name` in a `PATH` directory.
fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Starts `cmd` with this process's environment plus `env`; its output is
/// logged line by line under `unit`.
pub fn spawn(cmd: &Prepared, env: &BTreeMap<String, String>, unit: &str) -> io::Result<Child> {
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a stop reaches whatever it started too, as
        // systemd's control group does.
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (prctl, getppid), allocating nothing on
    // success.
    unsafe {
        command.pre_exec(move || {
            // A dead stand-in is a dead machine: its processes die with it.
            // (The signal follows the thread that forked; this program has
            // one runtime thread, see main.rs.)
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(io::Error::other("the stand-in died before its child ran"));
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    if let Some(out) = child.stdout.take() {
        pump(out, unit.to_string());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, unit.to_string());
    }
    Ok(child)
}

/// Logs each line of a child's output until it closes.
fn pump(stream: impl AsyncRead + Unpin + Send + 'static, unit: String) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "unit", unit = %unit, "{line}");
        }
    });
}

/// Sends `signal` to the process group of `child` (if it still runs).
pub fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Stops `child` as systemd stops a process: SIGTERM to its group, SIGKILL
/// after `timeout`; waits for it.
pub async fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    signal(child, Signal::SIGTERM);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal(child, Signal::SIGKILL);
            child.wait().await.ok()
        }
    }
}

/// How systemd classifies a main process's end.
pub fn exit_of(status: ExitStatus) -> Exit {
    if let Some(sig) = status.signal() {
        // systemd's clean-exit signals for a service's main process.
        let clean = [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGPIPE,
        ]
        .iter()
        .any(|s| *s as i32 == sig);
        return if clean {
            Exit::Clean
        } else {
            Exit::Signal(sig)
        };
    }
    match status.code() {
        Some(0) => Exit::Clean,
        Some(code) => Exit::Code(code),
        None => Exit::StartFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_absolute_program_falls_back_to_path() {
        let problems = Problems::default();
        let sh = resolve("/nonexistent/bin/sh", &problems);
        assert!(sh.ends_with("/sh") && Path::new(&sh).exists(), "{sh}");
        assert_eq!(resolve("/bin/sh", &problems), "/bin/sh");
        assert_eq!(resolve("sh", &problems), "sh");
        assert_eq!(
            resolve("/nonexistent/no-such-tool-here", &problems),
            "/nonexistent/no-such-tool-here"
        );
    }

    #[test]
    fn pulls_are_recognised() {
        let p = |program: &str, args: &[&str]| Prepared {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ignore_failure: false,
        };
        assert_eq!(
            p("/usr/bin/docker", &["pull", "busybox:latest"]).pulled_image(),
            Some("busybox:latest")
        );
        assert_eq!(p("docker", &["run", "busybox"]).pulled_image(), None);
        assert_eq!(p("/bin/podman", &["pull", "x"]).pulled_image(), None);
    }

    #[test]
    fn exits_are_classified_like_systemd() {
        assert_eq!(exit_of(ExitStatus::from_raw(0)), Exit::Clean);
        assert_eq!(exit_of(ExitStatus::from_raw(3 << 8)), Exit::Code(3));
        assert_eq!(exit_of(ExitStatus::from_raw(15)), Exit::Clean);
        assert_eq!(exit_of(ExitStatus::from_raw(9)), Exit::Signal(9));
    }
}
