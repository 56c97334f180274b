//! One Docker event: the key of the container it is about made to match
//! what Docker reports for that container now.

use super::error::lease_error;
use super::stats::bump;
use super::{
    Registrator, RegistratorError, UNIT_LABEL, container_ip, docker, is_valid_container_name,
    is_valid_unit_name,
};
use bollard::models::{ContainerInspectResponse, EventMessage};
use etcd_client::PutOptions;
use tracing::{debug, info};

/// What Docker says a container should have registered right now.
enum Observed {
    /// Running, with an IP: this key should hold this IP.
    Registered { key: String, ip: String },
    /// Gone, stopped, without an IP or not registrable: no key.
    Absent,
}

impl Registrator {
    /// Brings the key of the container an event is about in line with what
    /// Docker reports for it now.
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
                named.push(self.instance_key(unit, name));
            }
        }
        let observed = self.observe(&id).await?;
        for key in named {
            if !matches!(&observed, Observed::Registered { key: k, .. } if *k == key) {
                self.deregister(&key).await?;
            }
        }
        if let Observed::Registered { key, ip } = observed {
            self.register(lease, &key, &ip).await?;
        }
        Ok(())
    }

    /// Inspects a container and says which key it should have now.
    async fn observe(&self, id: &str) -> Result<Observed, RegistratorError> {
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
        let Some(key) = self.key_for(id, unit.map(String::as_str), name) else {
            return Ok(Observed::Absent);
        };
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref());
        match container_ip(networks) {
            Some(ip) => Ok(Observed::Registered { key, ip }),
            None => {
                info!(container = %id, key = %key, "container has no IP yet; not registered");
                Ok(Observed::Absent)
            }
        }
    }

    async fn register(&self, lease: i64, key: &str, ip: &str) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        let put = kv.put(
            key,
            ip,
            Some(PutOptions::new().with_lease(lease).with_prev_key()),
        );
        match self.config.timed(put).await {
            Ok(r) => {
                let unchanged = r
                    .prev_key()
                    .is_some_and(|p| p.value() == ip.as_bytes() && p.lease() == lease);
                if unchanged {
                    debug!(key = %key, ip = %ip, "already registered");
                } else {
                    bump(&self.stats.registrations, "kaylee_registrations_total");
                    info!(key = %key, ip = %ip, "registered container");
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

    async fn deregister(&self, key: &str) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        match self.config.timed(kv.delete(key, None)).await {
            Ok(r) => {
                if r.deleted() > 0 {
                    bump(&self.stats.deregistrations, "kaylee_deregistrations_total");
                    info!(key = %key, "deregistered container");
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
