//! Command-line flags and the settings they make.

use clap::{Parser, ValueEnum};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// fleet v1.0.0's engine and agents towards etcd, running units on the
/// local Docker engine (or simulating them); see the module docs.
#[derive(Debug, Parser)]
#[command(
    name = "fleet-standin",
    version,
    about = "fleet v1.0.0's engine and agents towards etcd, running units on the local Docker engine (or simulated)"
)]
pub struct Args {
    /// etcd endpoints, comma separated (plain http on loopback).
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd_endpoints: Vec<String>,
    /// etcd API of fleet's registry: v2 is what real fleet uses (etcd must
    /// run with --enable-v2=true); v3 is the flat layout of Kaylee's
    /// --fleet-etcd-api v3.
    #[arg(long, value_enum, default_value = "v2")]
    fleet_etcd_api: Api,
    /// Prefix of fleet's registry in etcd.
    #[arg(long, default_value = "/_coreos.com/fleet/")]
    fleet_prefix: String,
    /// A fleet machine this process stands for (repeatable) [default: the
    /// content of /etc/machine-id].
    #[arg(long = "machine", value_name = "ID")]
    machines: Vec<String>,
    /// Machine metadata, `[ID:]key=value,key=value` (repeatable); without
    /// `ID:` it applies to every machine of this process.
    #[arg(long = "metadata", value_name = "[ID:]K=V,...")]
    metadata: Vec<String>,
    /// PublicIP in every machine entry.
    #[arg(long, default_value = "127.0.0.1")]
    public_ip: String,
    /// Also run fleet's engine (scheduler); several processes may, one leads.
    #[arg(long)]
    engine: bool,
    /// TTL of machine entries and job-state heartbeats (fleet's agent_ttl).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// TTL of unit states [default: --ttl]; longer lets a dead machine's
    /// states linger after its machine entry is gone.
    #[arg(long, value_parser = humantime::parse_duration)]
    state_ttl: Option<Duration>,
    /// How often the registry is read (agents, and engine rounds).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// systemd units that exist on this host, comma separated (e.g.
    /// flanneld.service); a unit that Requires= a unit neither listed nor
    /// run by this process is never started (inactive/dead).
    #[arg(long, value_delimiter = ',')]
    host_units: Vec<String>,
    /// Run nothing: a unit runs after --start-delay (no Docker needed).
    #[arg(long)]
    simulate: bool,
    /// With --simulate: how long a unit is activating before it runs.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, requires = "simulate")]
    start_delay: Duration,
    /// With --simulate: a glob (`*` matches anything) of images whose
    /// ExecStartPre fails forever (repeatable).
    #[arg(long, value_name = "GLOB", requires = "simulate")]
    fail_image: Vec<String>,
    /// Use this instead of every unit's RestartSec= (units say 30).
    #[arg(long, value_parser = humantime::parse_duration)]
    restart_sec: Option<Duration>,
    /// Use this instead of every unit's TimeoutStopSec= (systemd's default
    /// is 90 s): how long a stopping unit's process gets before SIGKILL.
    #[arg(long, value_parser = humantime::parse_duration)]
    stop_timeout: Option<Duration>,
    /// `docker pull IMAGE` succeeds without a registry when the engine
    /// already has IMAGE (otherwise it runs as written).
    #[arg(long)]
    offline_pull: bool,
    /// Directory of the host-wide locks that let one process run a global
    /// unit's container for every machine [default: $TMPDIR/fleet-standin].
    #[arg(long)]
    lock_dir: Option<PathBuf>,
    /// Deadline of every etcd request.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    etcd_request_timeout: Duration,
}

/// The etcd API fleet's registry is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Api {
    V2,
    V3,
}

/// One machine this process stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub id: String,
    pub metadata: BTreeMap<String, String>,
}

/// `--simulate` and what goes with it.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub start_delay: Duration,
    pub fail_images: Vec<String>,
}

/// Everything the flags say, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoints: Vec<String>,
    pub api: Api,
    /// Ends with `/`.
    pub prefix: String,
    pub machines: Vec<Machine>,
    pub public_ip: String,
    pub engine: bool,
    pub ttl: Duration,
    pub state_ttl: Duration,
    pub interval: Duration,
    pub host_units: BTreeSet<String>,
    pub simulate: Option<Simulation>,
    pub restart_sec: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub offline_pull: bool,
    pub lock_dir: PathBuf,
    pub request_timeout: Duration,
}

impl Args {
    /// The settings, or why the flags make none.
    pub fn settings(&self) -> Result<Settings, String> {
        let endpoints: Vec<String> = self
            .etcd_endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err("--etcd-endpoints: none given".into());
        }
        let mut prefix = self.fleet_prefix.clone();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let ids = if self.machines.is_empty() {
            vec![local_machine_id()?]
        } else {
            self.machines.clone()
        };
        let machines = machines(&ids, &self.metadata)?;
        for (flag, d) in [("--ttl", self.ttl), ("--interval", self.interval)] {
            if d.is_zero() {
                return Err(format!("{flag} must be more than 0"));
            }
        }
        let state_ttl = self.state_ttl.unwrap_or(self.ttl);
        if state_ttl.is_zero() {
            return Err("--state-ttl must be more than 0".into());
        }
        Ok(Settings {
            endpoints,
            api: self.fleet_etcd_api,
            prefix,
            machines,
            public_ip: self.public_ip.clone(),
            engine: self.engine,
            ttl: self.ttl,
            state_ttl,
            interval: self.interval,
            host_units: self
                .host_units
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            simulate: self.simulate.then(|| Simulation {
                start_delay: self.start_delay,
                fail_images: self.fail_image.clone(),
            }),
            restart_sec: self.restart_sec,
            stop_timeout: self.stop_timeout,
            offline_pull: self.offline_pull,
            lock_dir: self
                .lock_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("fleet-standin")),
            request_timeout: self.etcd_request_timeout,
        })
    }
}

/// fleet's own default: the host's `/etc/machine-id`.
fn local_machine_id() -> Result<String, String> {
    let id = std::fs::read_to_string("/etc/machine-id")
        .map_err(|e| format!("no --machine given and /etc/machine-id unreadable: {e}"))?;
    let id = id.trim().to_string();
    if id.is_empty() {
        return Err("no --machine given and /etc/machine-id is empty".into());
    }
    Ok(id)
}

/// The machines named by `ids`, with the `--metadata` flags applied.
pub fn machines(ids: &[String], metadata: &[String]) -> Result<Vec<Machine>, String> {
    let mut out: Vec<Machine> = Vec::new();
    for id in ids {
        let id = id.trim();
        if id.is_empty() || id.contains(['/', ' ', ':']) {
            return Err(format!(
                "--machine {id:?}: a machine id is a non-empty word without '/', ':' or spaces"
            ));
        }
        if out.iter().any(|m| m.id == id) {
            return Err(format!("--machine {id} is given twice"));
        }
        out.push(Machine {
            id: id.to_string(),
            metadata: BTreeMap::new(),
        });
    }
    for flag in metadata {
        let (target, pairs) = split_target(flag);
        for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            // fleet's own parsing of its metadata setting: key=value pairs,
            // both trimmed.
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("--metadata {flag}: {pair:?} is not key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(format!("--metadata {flag}: empty key in {pair:?}"));
            }
            let mut matched = false;
            for m in out.iter_mut() {
                if target.is_none_or(|t| t == m.id) {
                    m.metadata.insert(key.to_string(), value.to_string());
                    matched = true;
                }
            }
            if !matched {
                return Err(format!("--metadata {flag}: no --machine {target:?}"));
            }
        }
    }
    Ok(out)
}

/// `ID:k=v,…` → (Some(ID), `k=v,…`); `k=v,…` → (None, …). Keys cannot hold
/// `:` but values may, so only a `:` before the first `=` names a machine.
fn split_target(flag: &str) -> (Option<&str>, &str) {
    let head = flag.split('=').next().unwrap_or("");
    match head.split_once(':') {
        Some((id, _)) => (Some(id.trim()), &flag[id.len() + 1..]),
        None => (None, flag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metadata_goes_to_its_machine_or_to_all() {
        let ms = machines(
            &ids(&["m1", "m2"]),
            &ids(&["region=eu", "m1:ssd=true,zone=a:1", "m2: ssd = false "]),
        )
        .expect("valid");
        assert_eq!(ms[0].metadata["region"], "eu");
        assert_eq!(ms[0].metadata["ssd"], "true");
        assert_eq!(ms[0].metadata["zone"], "a:1");
        assert_eq!(ms[1].metadata["ssd"], "false");
        assert_eq!(ms[1].metadata.get("zone"), None);
    }

    #[test]
    fn bad_machines_and_metadata_are_refused() {
        assert!(machines(&ids(&["m1", "m1"]), &[]).is_err());
        assert!(machines(&ids(&["a/b"]), &[]).is_err());
        assert!(machines(&ids(&["m1"]), &ids(&["m9:ssd=true"])).is_err());
        assert!(machines(&ids(&["m1"]), &ids(&["ssd"])).is_err());
    }
}
