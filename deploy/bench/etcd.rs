//! A single-member etcd of the bench's own: Debian's `etcd-server`
//! (`/usr/bin/etcd`, or `$KAYLEE_BENCH_ETCD`), loopback ports, a temporary
//! data directory, default settings otherwise (fsync on) and the v2 API on
//! (`--enable-v2=true`, as fleet needs; for runs of both APIs), so that raw
//! and Kaylee runs see the same etcd.

use crate::procs;
use anyhow::{Context, Result, bail};
use etcd_client::Client;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Watch and list responses of a 10,000-unit registry exceed tonic's 4 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

pub fn binary() -> PathBuf {
    std::env::var_os("KAYLEE_BENCH_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// First line of `etcd --version`, e.g. `etcd Version: 3.4.23`.
pub fn version() -> String {
    Command::new(binary())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .map(|l| l.trim_start_matches("etcd Version:").trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub struct Etcd {
    child: Child,
    port: u16,
    // Declared last: removed after the process is killed in `drop`.
    dir: TempDir,
}

impl Etcd {
    pub async fn start(label: &str) -> Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kaylee-bench-etcd-{label}-"))
            .tempdir()
            .context("creating etcd's temporary directory")?;
        procs::register_dir(dir.path().to_path_buf());
        let (port, peer) = (procs::free_port()?, procs::free_port()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let name = format!("kaylee-bench-{label}");
        let log = File::create(dir.path().join("etcd.log"))?;
        let mut cmd = Command::new(binary());
        cmd.args(["--name", &name, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-cluster-token", &name])
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .arg("--enable-v2=true");
        let child = procs::spawn(&mut cmd, log)?;
        let mut etcd = Etcd { child, port, dir };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "etcd exited ({status}); see {}",
                    self.dir.path().join("etcd.log").display()
                );
            }
            if let Ok(mut c) = self.client().await
                && c.status().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("etcd did not answer within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        procs::cpu_seconds(self.child.id())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> Result<Client> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(30));
        Ok(Client::connect([self.endpoint()], Some(opts)).await?)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        procs::kill_child(&mut self.child);
    }
}
