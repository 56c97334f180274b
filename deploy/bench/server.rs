//! `kaylee server` processes (the release binary) and what /proc says about
//! them: peak memory and CPU time.

use crate::procs;
use crate::v2::Api;
use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;
use tempfile::TempDir;

/// The kaylee binary under test: `$KAYLEE_BENCH_BIN`, else the one cargo
/// built beside this bench (target/release/kaylee).
pub fn binary() -> PathBuf {
    std::env::var_os("KAYLEE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kaylee")))
}

/// Flags every bench server gets; fleet's records go through `api`
/// (`--fleet-etcd-api`, where the binary lets one choose).
#[derive(Debug, Clone)]
pub struct Flags {
    pub api: Api,
    pub lease_ttl_s: u64,
    /// `--workers` when set by `$KAYLEE_BENCH_WORKERS`, else the default.
    pub workers: Option<usize>,
    default_workers: Option<usize>,
    pub max_txn_ops: usize,
    v3_flag: bool,
}

impl Flags {
    pub fn detect(lease_ttl_s: u64, max_txn_ops: usize) -> Result<Flags> {
        let help = Command::new(binary())
            .args(["server", "--help"])
            .output()
            .with_context(|| format!("running {} server --help", binary().display()))?;
        let text = String::from_utf8_lossy(&help.stdout);
        let workers = std::env::var("KAYLEE_BENCH_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok());
        // Help text wraps anywhere; compare it with single spaces.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let default_workers = text
            .split_once("--workers")
            .and_then(|(_, rest)| rest.split_once("default: "))
            .and_then(|(_, rest)| rest.split(']').next())
            .and_then(|n| n.trim().parse().ok());
        Ok(Flags {
            api: Api::V3,
            lease_ttl_s,
            workers,
            default_workers,
            max_txn_ops,
            v3_flag: text.contains("--fleet-etcd-api"),
        })
    }

    /// The workers the servers run with, as far as the binary says.
    pub fn effective_workers(&self) -> Option<usize> {
        self.workers.or(self.default_workers)
    }

    /// The same flags, writing fleet's registry through `api`.
    pub fn for_api(&self, api: Api) -> Flags {
        Flags {
            api,
            ..self.clone()
        }
    }

    /// Whether the binary can write through `api`.
    pub fn supports(&self, api: Api) -> bool {
        self.v3_flag || api == Api::V3
    }
}

pub struct Server {
    child: Option<Child>,
    pub name: String,
    listen: u16,
    dir: TempDir,
}

impl Server {
    pub fn start(endpoint: &str, name: &str, flags: &Flags) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kaylee-bench-{name}-"))
            .tempdir()?;
        procs::register_dir(dir.path().to_path_buf());
        let listen = procs::free_port()?;
        let log = File::create(dir.path().join("server.log"))?;
        let mut cmd = Command::new(binary());
        cmd.args(["--etcd-endpoints", endpoint, "server", "--name", name])
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--lease-ttl", &format!("{}s", flags.lease_ttl_s)])
            .args(["--max-txn-ops", &flags.max_txn_ops.to_string()])
            // No fleet agent runs jobs here: a rolling update would otherwise
            // move on after the default 2 m and write in later scenarios.
            .args(["--start-timeout", "1h"])
            .arg("--no-registrator");
        if let Some(w) = flags.workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        if flags.v3_flag {
            cmd.args(["--fleet-etcd-api", flags.api.name()]);
        }
        // The production default; `KAYLEE_BENCH_LOG` to look closer.
        cmd.env(
            "RUST_LOG",
            std::env::var("KAYLEE_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1");
        let child = procs::spawn(&mut cmd, log)?;
        Ok(Server {
            child: Some(child),
            name: name.to_string(),
            listen,
            dir,
        })
    }

    pub fn pid(&self) -> Result<u32> {
        match &self.child {
            Some(c) => Ok(c.id()),
            None => bail!("server {} is not running", self.name),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()? as i32), signal)?;
        Ok(())
    }

    /// Waits for the process to exit (after a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if !procs::wait_exit(&mut child, limit) {
            procs::kill_child(&mut child);
            bail!("server {} did not exit within {limit:?}", self.name);
        }
        Ok(())
    }

    /// The port of its /metrics, /healthz and /readyz.
    pub fn port(&self) -> u16 {
        self.listen
    }

    /// Peak and current resident memory, MiB (`VmHWM`, `VmRSS`).
    pub fn memory_mib(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        };
        match (field("VmHWM:"), field("VmRSS:")) {
            (Some(hwm), Some(rss)) => Ok((hwm, rss)),
            _ => bail!("no VmHWM/VmRSS in /proc/<pid>/status"),
        }
    }

    /// CPU time used so far (utime + stime), seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        procs::cpu_seconds(self.pid()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            procs::kill_child(&mut child);
        }
        // For looking into a run: `KAYLEE_BENCH_KEEP=<dir>` keeps the logs.
        if let Some(keep) = std::env::var_os("KAYLEE_BENCH_KEEP") {
            let to = PathBuf::from(keep).join(format!("{}.log", self.name));
            let _ = std::fs::copy(self.dir.path().join("server.log"), to);
        }
    }
}

/// `/readyz` of the server on `port` says it leads.
pub fn is_leader(port: u16) -> bool {
    http_get(port, "/readyz").is_ok_and(|body| body.contains("\"leader\":true"))
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
