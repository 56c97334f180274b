//! One Docker event: the key of the container it is about made to match
//! what Docker reports for that container now.

use super::error::lease_error;
use super::stats::bump;
use super::{
    Address, Keys, Registrator, RegistratorError, UNIT_LABEL, address, docker,
    is_valid_container_name, is_valid_unit_name,
};
use crate::runtime::Source;
use crate::units::cluster::parse_machine;
use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};
use etcd_client::{PutOptions, Txn, TxnOp, TxnOpResponse};
use tracing::{debug, info};

/// The health key's value for a container without a `HEALTHCHECK`.
pub const NO_HEALTHCHECK: &str = "none";

/// What Docker says a container should have registered right now.
pub(super) enum Observed {
    /// Running, with an address: these keys should hold these values.
    Registered {
        keys: Keys,
        ip: String,
        /// Docker's `State.Health.Status` (`starting`, `healthy`,
        /// `unhealthy`), or `none` without a `HEALTHCHECK`.
        health: String,
    },
    /// Gone, stopped, without an address or not registrable: no keys.
    Absent,
}

impl Registrator {
    /// Brings the keys of the container an event is about in line with
    /// what Docker reports for it now.
    pub(super) async fn on_event(
        &self,
        lease: i64,
        ev: EventMessage,
    ) -> Result<(), RegistratorError> {
        let action = ev.action.as_deref().unwrap_or("");
        let Some(actor) = ev.actor else {
            return Ok(());
        };
        let Some(id) = actor.id.filter(|id| !id.is_empty()) else {
            return Ok(());
        };
        let attributes = actor.attributes.unwrap_or_default();
        let unit = attributes.get(UNIT_LABEL).map(String::as_str);
        debug!(action, container = %id, "docker event");
        // Keys the event's names point at; the container may hold none of
        // them any more.
        let mut named = Vec::new();
        for attribute in ["name", "oldName"] {
            let name = attributes.get(attribute).map(|n| n.trim_start_matches('/'));
            if let (Some(unit), Some(name)) = (unit, name)
                && is_valid_unit_name(unit)
                && is_valid_container_name(name)
            {
                named.push(Keys {
                    instance: self.instance_key(unit, name),
                    health: self.keys.health(&self.machine_id, unit, name),
                });
            }
        }
        let observed = self.observe(&id).await?;
        for keys in named {
            if !matches!(&observed, Observed::Registered { keys: k, .. } if *k == keys) {
                self.deregister(&keys).await?;
            }
        }
        if let Observed::Registered { keys, ip, health } = observed {
            self.register(lease, &keys, &ip, &health).await?;
        }
        Ok(())
    }

    /// Inspects a container and says which keys it should have now.
    pub(super) async fn observe(&self, id: &str) -> Result<Observed, RegistratorError> {
        let c: ContainerInspectResponse =
            match docker::timed(self.docker.inspect_container(id, None)).await {
                Ok(c) => c,
                Err(e) if docker::is_not_found(&e) => return Ok(Observed::Absent),
                Err(e) => {
                    bump(
                        &self.stats.registration_errors,
                        "kaylee_registration_errors_total",
                    );
                    return Err(e);
                }
            };
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Ok(Observed::Absent);
        }
        let unit = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(UNIT_LABEL));
        let name = c.name.as_deref().map(|n| n.trim_start_matches('/'));
        let Some(keys) = self.keys_for(id, unit.map(String::as_str), name) else {
            return Ok(Observed::Absent);
        };
        let health = c
            .state
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .and_then(|s| match s {
                HealthStatusEnum::HEALTHY => Some("healthy"),
                HealthStatusEnum::UNHEALTHY => Some("unhealthy"),
                HealthStatusEnum::STARTING => Some("starting"),
                _ => None,
            })
            .unwrap_or(NO_HEALTHCHECK)
            .to_string();
        let mode = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref());
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref());
        let ip = match address(mode, networks) {
            Address::Ip(ip) => ip,
            Address::HostNetwork => match self.public_ip().await {
                Some(ip) => ip,
                None => {
                    self.say_once(
                        id,
                        "host",
                        "on the host's network, and fleet has no PublicIP for this machine; not registered",
                    );
                    return Ok(Observed::Absent);
                }
            },
            Address::NoNetwork => {
                self.say_once(
                    id,
                    "none",
                    "has no network (--net=none); nothing to register",
                );
                return Ok(Observed::Absent);
            }
            Address::NotYet => {
                self.say_once(id, "no-ip", "has no IP yet; registered once it has one");
                return Ok(Observed::Absent);
            }
        };
        Ok(Observed::Registered { keys, ip, health })
    }

    /// This machine's `PublicIP` in fleet's `machines/` (what fleet and its
    /// users address it by), for containers on the host's network.
    async fn public_ip(&self) -> Option<String> {
        let listing = self.machine_object.as_ref()?.list().await.ok()?;
        listing
            .items
            .iter()
            .find_map(|i| parse_machine(&i.value))
            .map(|m| m.public_ip)
            .filter(|ip| !ip.is_empty())
    }

    async fn register(
        &self,
        lease: i64,
        keys: &Keys,
        ip: &str,
        health: &str,
    ) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        let on_lease = || Some(PutOptions::new().with_lease(lease));
        let before = self
            .config
            .timed(kv.get(keys.instance.as_str(), None))
            .await
            .map_err(|e| lease_error(e, lease))?;
        let unchanged = before
            .kvs()
            .first()
            .is_some_and(|p| p.value() == ip.as_bytes() && p.lease() == lease);
        // The IP and the health in one transaction, the health always (`none`
        // without a healthcheck): the leader watches the two prefixes apart,
        // so it counts a container registered only once it has both.
        let txn = Txn::new().and_then([
            TxnOp::put(keys.instance.as_str(), ip, on_lease()),
            TxnOp::put(keys.health.as_str(), health, on_lease()),
        ]);
        match self.config.timed(kv.txn(txn)).await {
            Ok(_) => {
                if unchanged {
                    debug!(key = %keys.instance, ip = %ip, ?health, "already registered");
                } else {
                    bump(&self.stats.registrations, "kaylee_registrations_total");
                    info!(key = %keys.instance, ip = %ip, ?health, "registered container");
                }
                Ok(())
            }
            Err(e) => {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                Err(lease_error(e, lease))
            }
        }
    }

    async fn deregister(&self, keys: &Keys) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        let txn = Txn::new().and_then([
            TxnOp::delete(keys.instance.as_str(), None),
            TxnOp::delete(keys.health.as_str(), None),
        ]);
        match self.config.timed(kv.txn(txn)).await {
            Ok(r) => {
                let deleted = r.op_responses().into_iter().any(|op| match op {
                    TxnOpResponse::Delete(d) => d.deleted() > 0,
                    _ => false,
                });
                if deleted {
                    bump(&self.stats.deregistrations, "kaylee_deregistrations_total");
                    info!(key = %keys.instance, "deregistered container");
                }
                Ok(())
            }
            Err(e) => {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                Err(e.into())
            }
        }
    }
}
