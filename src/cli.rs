//! The command line: one binary is CLI and server. Global flags (etcd
//! connection) work before or after the command, and read the same
//! environment variables as etcdctl.

use clap::{Args, Parser, Subcommand, ValueEnum};
use kaylee_controllers::etcd::{DEFAULT_ENDPOINTS, EtcdConfig};
use kaylee_controllers::registry::FleetApi;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kaylee",
    version,
    about = "A container manager for fleet and etcd clusters",
    long_about = "Kaylee turns small YAML units into fleet units, rolls updates through replica by \
                  replica, and publishes every container's IP in etcd."
)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "etcd connection (global)")]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Prefix of Kaylee's keys in etcd.
    #[arg(
        long,
        global = true,
        env = "KAYLEE_ETCD_PREFIX",
        default_value = "/kaylee"
    )]
    pub etcd_prefix: String,
    /// CA certificate (PEM) to verify etcd's server certificate.
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user as user:password.
    #[arg(long, global = true, env = "ETCDCTL_USER", hide_env_values = true)]
    pub etcd_user: Option<String>,
    /// How long to wait for a connection to etcd.
    #[arg(long, global = true, env = "KAYLEE_ETCD_DIAL_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub etcd_dial_timeout: Duration,
    /// Deadline of every etcd request.
    #[arg(long, global = true, env = "KAYLEE_ETCD_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_request_timeout: Duration,
}

impl EtcdArgs {
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: self
                .etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            prefix: self.etcd_prefix.trim_end_matches('/').to_string(),
            ca_cert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            connect_timeout: self.etcd_dial_timeout,
            request_timeout: self.etcd_request_timeout,
        }
    }
}

/// The settings that shape unit text; the cluster's, stored in etcd, win
/// when there are any.
#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// Prefix of every fleet unit name Kaylee owns (the cluster's setting
    /// wins when etcd has one).
    #[arg(long, env = "KAYLEE_UNIT_PREFIX", default_value = "k")]
    pub unit_prefix: String,
    /// Unit every container requires and starts after; empty for none (the
    /// cluster's setting wins when etcd has one).
    #[arg(long, env = "KAYLEE_NETWORK_UNIT", default_value = "flanneld.service")]
    pub network_unit: String,
}

/// Where fleet's registry is, and which of its units are Kaylee's.
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Prefix of fleet's registry in etcd.
    #[arg(
        long,
        env = "KAYLEE_FLEET_PREFIX",
        default_value = "/_coreos.com/fleet/"
    )]
    pub fleet_prefix: String,
    /// Prefix of every fleet unit name Kaylee owns.
    #[arg(long, env = "KAYLEE_UNIT_PREFIX", default_value = "k")]
    pub unit_prefix: String,
    /// etcd API of fleet's registry: v2 is the one real fleet reads (etcd
    /// must run with --enable-v2=true); v3 keys are invisible to fleet.
    #[arg(long, env = "KAYLEE_FLEET_ETCD_API", value_enum, default_value = "v2")]
    pub fleet_etcd_api: FleetEtcdApi,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetEtcdApi {
    V2,
    V3,
}

impl FleetArgs {
    pub fn api(&self) -> FleetApi {
        match self.fleet_etcd_api {
            FleetEtcdApi::V2 => FleetApi::V2,
            FleetEtcdApi::V3 => FleetApi::V3,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Unit every container requires and starts after; empty for none. The
    /// first server seeds the cluster's setting with it; later servers use
    /// the cluster's.
    #[arg(long, env = "KAYLEE_NETWORK_UNIT", default_value = "flanneld.service")]
    pub network_unit: String,
    /// TTL of the server's lease: how long a dead leader keeps leadership.
    #[arg(long, env = "KAYLEE_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// Progress deadline of units that set none: how long a rollout may go
    /// without a new replica becoming available before it stops (failed).
    #[arg(long, env = "KAYLEE_START_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub start_timeout: Duration,
    /// How long a fleet unit may go unscheduled (no target machine) before
    /// it is reported as fitting no machine.
    #[arg(long, env = "KAYLEE_SCHEDULE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub schedule_grace: Duration,
    /// Spec revisions kept per unit for `kaylee history` and rollbacks.
    #[arg(long, env = "KAYLEE_HISTORY_LIMIT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_limit: u64,
    /// How often every unit is reconciled even without changes; 0 turns
    /// these periodic passes off.
    #[arg(long, env = "KAYLEE_RESYNC_PERIOD", default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync_period: Duration,
    /// Units reconciled in parallel.
    // Their writes share batches: 8 left v3 transactions a quarter full at
    // cold start, and through v2 every batch waits for its slowest request
    // and its statuses, so 64 halve those waits against 32 (README,
    // Performance).
    #[arg(long, env = "KAYLEE_WORKERS", default_value_t = 64)]
    pub workers: usize,
    /// Threads that run the server [default: one less than the cores, at
    /// least 1, at most 2].
    // Its writes go through one transaction at a time, so more threads add
    // little, and on a small machine they take the core etcd needs (README,
    // Performance).
    #[arg(long, env = "KAYLEE_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Operations per etcd transaction (etcd's --max-txn-ops).
    #[arg(long, env = "KAYLEE_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// This machine's id for registered instances [default: /etc/machine-id].
    #[arg(long, env = "KAYLEE_MACHINE_ID")]
    pub machine_id: Option<String>,
    /// Docker engine whose containers are registered [default: $DOCKER_HOST,
    /// else the local socket].
    #[arg(long)]
    pub docker_host: Option<String>,
    /// Do not register this machine's containers (run only the controller).
    #[arg(long, env = "KAYLEE_NO_REGISTRATOR")]
    pub no_registrator: bool,
    /// Name stored in the leader key [default: <hostname>/<pid>].
    #[arg(long, env = "KAYLEE_NAME")]
    pub name: Option<String>,
    /// Log lines: human-readable text, or one JSON object per line.
    #[arg(long, env = "KAYLEE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Address of the HTTP server with /metrics, /healthz and /readyz.
    #[arg(long, env = "KAYLEE_LISTEN", default_value = "127.0.0.1:9477")]
    pub listen: SocketAddr,
}

/// Following a rollout after a write.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until every replica of the new spec is available; exit 1 when
    /// the unit is invalid, its rollout fails or is rolled back, or on the
    /// timeout.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check unit files; prints "ok" per file or every error.
    Validate {
        /// YAML (or JSON) unit files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not ask etcd (for 1 s at most) about the cluster's network
        /// unit.
        #[arg(long)]
        offline: bool,
    },
    /// Print the fleet units a unit file would produce, with the cluster's settings.
    Render {
        /// A YAML (or JSON) unit file.
        file: PathBuf,
        #[command(flatten)]
        render: RenderArgs,
        /// Render with the flags, without asking etcd (for 1 s at most) for
        /// the cluster's settings.
        #[arg(long)]
        offline: bool,
        /// Restart marker to render with (as `kaylee restart` would set).
        #[arg(long, default_value = "")]
        restart_marker: String,
        /// Output format: text for people, JSON for scripts.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run a server: leader-elected units controller and container registrator.
    Server(ServerArgs),
    /// Validate unit files and create or update the units in etcd.
    Run {
        /// YAML (or JSON) unit files; all are checked before any is written.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List units: replicas available/desired, condition, phase, image.
    Ls {
        /// Output format: text for people, JSON for scripts.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Roll every replica of a unit without changing its spec.
    Restart {
        /// Unit name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a unit; the leader destroys its fleet units.
    Rm {
        /// Unit name.
        name: String,
        /// Delete its history too (kept by default), also of a unit already removed.
        #[arg(long)]
        purge: bool,
    },
    /// List a unit's spec revisions: when, spec hash, image, whether it
    /// was ever fully available.
    History {
        /// Unit name.
        name: String,
        /// Output format: text for people, JSON for scripts.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Put an earlier revision of a unit's spec back as its desired state.
    Rollback {
        /// Unit name.
        name: String,
        /// The revision to put back [default: the newest earlier revision
        /// that was fully available].
        #[arg(long)]
        to_revision: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show what `run` would change, writing nothing: spec fields, and
    /// which fleet units would be created, destroyed or kept.
    Diff {
        /// YAML (or JSON) unit files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Unit every container requires and starts after; empty for none.
        #[arg(long, env = "KAYLEE_NETWORK_UNIT", default_value = "flanneld.service")]
        network_unit: String,
    },
    /// Show a unit: availability, one line per replica (machine, fleet
    /// state, health, reason), and registered instances.
    Status {
        /// Unit name.
        name: String,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output format: text for people, JSON for scripts.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
