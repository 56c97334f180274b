//! The CLI's view of the cluster: the render settings stored in
//! `<etcd-prefix>/config` (`kaylee_controllers::cluster_config`) and
//! whether the network unit they name can run. Commands that work offline
//! (`render`, `validate`) ask with a short deadline and carry on without.

use super::{Exit, Result};
use crate::cli::EtcdArgs;
use crate::output::eprint_line;
use kaylee_controllers::client::KayleeClient;
use kaylee_controllers::cluster_config::{self, ClusterConfigError, FLANNEL_UNIT};
use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::fleet::RenderOptions;
use std::time::Duration;

/// How long an offline command waits for etcd (dial, then each request):
/// long enough for a LAN, short enough not to hold up a CI check.
const OFFLINE_LOOKUP: Duration = Duration::from_secs(1);

/// What etcd said about the cluster.
pub enum Lookup {
    /// The cluster's settings, and a client to ask more.
    Found(RenderOptions, KayleeClient),
    /// etcd answered, but no server has stored settings yet.
    Absent(KayleeClient),
    /// etcd could not be asked; why.
    Unreachable(String),
}

/// The etcd settings with deadlines cut to [`OFFLINE_LOOKUP`].
pub fn quick(etcd: &EtcdArgs) -> EtcdConfig {
    let mut config = etcd.config();
    config.connect_timeout = config.connect_timeout.min(OFFLINE_LOOKUP);
    config.request_timeout = config.request_timeout.min(OFFLINE_LOOKUP);
    config
}

/// Reads the cluster's settings. A stored value that cannot be used is an
/// error (exit 1) naming the key and field: rendering around it would show
/// other units than the servers write.
pub async fn lookup(config: &EtcdConfig) -> Result<Lookup> {
    let client = match KayleeClient::connect(config).await {
        Ok(client) => client,
        Err(e) => return Ok(Lookup::Unreachable(e.to_string())),
    };
    match cluster_config::read(client.etcd_client(), config).await {
        Ok(Some(options)) => Ok(Lookup::Found(options, client)),
        Ok(None) => Ok(Lookup::Absent(client)),
        Err(ClusterConfigError::Etcd(e)) => Ok(Lookup::Unreachable(e.to_string())),
        Err(e @ ClusterConfigError::Invalid { .. }) => Err(Exit::runtime(e)),
    }
}

/// `unit prefix `k`, network unit `flanneld.service``, for notes.
pub fn describe(options: &RenderOptions) -> String {
    let network = if options.network_unit.is_empty() {
        "none".to_string()
    } else {
        format!("`{}`", options.network_unit)
    };
    format!(
        "unit prefix `{}`, network unit {network}",
        options.unit_prefix
    )
}

/// One line on stderr when the units would require the default network
/// unit, `flanneld.service`, and no flanneld has registered in this etcd:
/// on hosts without it the containers never start (systemd fails the
/// `Requires=` dependency and does not retry). Other network units cannot
/// be seen from etcd, so nothing is said about them.
pub async fn network_note(options: &RenderOptions, client: &KayleeClient, config: &EtcdConfig) {
    if options.network_unit != FLANNEL_UNIT {
        return;
    }
    if cluster_config::flannel_leases(client.etcd_client(), config).await == Some(false) {
        eprint_line(&format!(
            "note: units require {FLANNEL_UNIT} (the cluster's network unit), but no flanneld has a lease in this etcd ({}/); on hosts without it they never start. For none, set \"networkUnit\":\"\" in {}",
            cluster_config::FLANNEL_SUBNETS,
            cluster_config::key(config)
        ));
    }
}
