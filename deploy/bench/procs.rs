//! Every process the bench starts (etcd, kaylee servers) is registered here,
//! so that none outlives the bench: handles kill theirs on drop, a panic hook
//! kills all of them before unwinding (a panic in a task would otherwise
//! leave them behind), and SIGINT/SIGTERM kill them and exit.

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock must not stop the clean-up.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn register(child: &Child) {
    lock(&CHILDREN).push(child.id());
}

/// Starts `cmd` with its output in `log`, registered for clean-up.
pub fn spawn(cmd: &mut Command, log: File) -> Result<Child> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    register(&child);
    Ok(child)
}

pub fn forget(pid: u32) {
    lock(&CHILDREN).retain(|p| *p != pid);
}

/// A directory removed at exit even when the bench is interrupted.
pub fn register_dir(path: PathBuf) {
    lock(&TEMP_DIRS).push(path);
}

/// SIGKILLs every registered process (by PID) and removes the temp dirs.
pub fn kill_all() {
    for pid in lock(&CHILDREN).drain(..) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for dir in lock(&TEMP_DIRS).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Installs the panic hook and the signal handler; call once from `main`
/// inside the runtime.
pub fn install_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        default(info);
    }));
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        kill_all();
        eprintln!("kaylee-bench: interrupted; killed its etcd and servers");
        std::process::exit(130);
    });
}

/// SIGKILLs and reaps `child`.
pub fn kill_child(child: &mut Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    forget(child.id());
}

/// Waits up to `limit` for `child` to exit; whether it did.
pub fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            forget(child.id());
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// CPU time `pid` has used so far (utime + stime), seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based).
    let ticks =
        |i: usize| -> Result<f64> { Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?) };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
