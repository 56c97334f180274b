//! The registry chosen at start-up (`--fleet-etcd-api`), behind one type so
//! the controller, the server and the CLI never know which API is used.

use super::v2::V2Registry;
use super::{ApplyError, FleetRegistry, V3Registry, Write};
use crate::etcd::EtcdPrefix;
use crate::etcd::election::Fence;
use crate::etcd::v2::V2Client;
use crate::etcd::v2::V2Prefix;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::keys::FleetKeys;
use crate::runtime::{EventStream, Keep, Listing, Source, SourceError};
use etcd_client::Client;
use std::fmt;
use std::str::FromStr;

/// Which etcd API fleet's registry is read and written through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetApi {
    /// etcd's v2 keys API: the one real fleet uses.
    #[default]
    V2,
    /// Flat v3 keys: invisible to fleet; for clusters whose fleet reader
    /// speaks v3, and for tests.
    V3,
}

impl fmt::Display for FleetApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FleetApi::V2 => "v2",
            FleetApi::V3 => "v3",
        })
    }
}

impl FromStr for FleetApi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v2" => Ok(FleetApi::V2),
            "v3" => Ok(FleetApi::V3),
            other => Err(format!("unknown fleet etcd API `{other}` (v2 or v3)")),
        }
    }
}

/// The registry over the API chosen with `--fleet-etcd-api`; made by
/// [`AnyRegistry::connect`].
#[derive(Clone)]
pub enum AnyRegistry {
    /// Through etcd's v2 keys API, as fleet reads it.
    V2(V2Registry),
    /// Through flat v3 keys, which fleet does not see.
    V3(V3Registry),
}

/// A watched key prefix of an [`AnyRegistry`], through the same API.
#[derive(Clone)]
pub enum AnySource {
    /// A prefix listed and long-polled through `/v2/keys`.
    V2(V2Prefix),
    /// A prefix listed and watched through v3.
    // etcd's client is large; sources are cloned per informer.
    V3(Box<EtcdPrefix>),
}

/// A batch [`AnyRegistry::prepare`] made; committing it through the other
/// API's registry is refused with [`ApplyError::WrongApi`].
pub enum AnyPrepared {
    /// The ops unchanged, for [`V2Registry`]: fleet's keys go as v2
    /// requests, Kaylee's own keys as fenced v3 transactions.
    V2(<V2Registry as FleetRegistry>::Prepared),
    /// The ops as [`V3Registry`]'s transactions.
    V3(<V3Registry as FleetRegistry>::Prepared),
}

impl AnyRegistry {
    /// The registry over `api`. For v2 it first makes sure etcd serves the
    /// v2 API, so a server without it fails at start-up with the fix
    /// instead of waiting forever on an empty registry.
    pub async fn connect(
        api: FleetApi,
        client: Client,
        config: &EtcdConfig,
        keys: FleetKeys,
        max_txn_ops: usize,
    ) -> Result<AnyRegistry, EtcdError> {
        Ok(match api {
            FleetApi::V3 => {
                AnyRegistry::V3(V3Registry::new(client, config.clone(), keys, max_txn_ops))
            }
            FleetApi::V2 => {
                let v2 = V2Client::new(config)?;
                v2.check_enabled().await?;
                AnyRegistry::V2(V2Registry::new(
                    v2,
                    client,
                    config.clone(),
                    keys,
                    max_txn_ops,
                ))
            }
        })
    }

    /// Which API this registry reads and writes through.
    pub fn api(&self) -> FleetApi {
        match self {
            AnyRegistry::V2(_) => FleetApi::V2,
            AnyRegistry::V3(_) => FleetApi::V3,
        }
    }
}

impl Source for AnySource {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        match self {
            AnySource::V2(s) => s.list_keeping(keep).await,
            AnySource::V3(s) => s.list_keeping(keep).await,
        }
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        match self {
            AnySource::V2(s) => s.watch(revision).await,
            AnySource::V3(s) => s.watch(revision).await,
        }
    }
}

impl FleetRegistry for AnyRegistry {
    type Source = AnySource;
    type Prepared = AnyPrepared;

    fn keys(&self) -> &FleetKeys {
        match self {
            AnyRegistry::V2(r) => r.keys(),
            AnyRegistry::V3(r) => r.keys(),
        }
    }

    fn jobs_source(&self) -> AnySource {
        match self {
            AnyRegistry::V2(r) => AnySource::V2(r.jobs_source()),
            AnyRegistry::V3(r) => AnySource::V3(Box::new(r.jobs_source())),
        }
    }

    fn states_source(&self) -> AnySource {
        match self {
            AnyRegistry::V2(r) => AnySource::V2(r.states_source()),
            AnyRegistry::V3(r) => AnySource::V3(Box::new(r.states_source())),
        }
    }

    fn source(&self, prefix: String) -> AnySource {
        match self {
            AnyRegistry::V2(r) => AnySource::V2(r.source(prefix)),
            AnyRegistry::V3(r) => AnySource::V3(Box::new(r.source(prefix))),
        }
    }

    fn batch_weight(&self, max_txn_ops: usize) -> usize {
        match self {
            AnyRegistry::V2(r) => r.batch_weight(max_txn_ops),
            AnyRegistry::V3(r) => r.batch_weight(max_txn_ops),
        }
    }

    fn prepare(&self, ops: Vec<Write>) -> AnyPrepared {
        match self {
            AnyRegistry::V2(r) => AnyPrepared::V2(r.prepare(ops)),
            AnyRegistry::V3(r) => AnyPrepared::V3(r.prepare(ops)),
        }
    }

    async fn commit(&self, prepared: AnyPrepared, fence: &Fence) -> Result<(), ApplyError> {
        match (self, prepared) {
            (AnyRegistry::V2(r), AnyPrepared::V2(p)) => r.commit(p, fence).await,
            (AnyRegistry::V3(r), AnyPrepared::V3(p)) => r.commit(p, fence).await,
            _ => Err(ApplyError::WrongApi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FleetApi;

    #[test]
    fn api_names_round_trip() {
        for api in [FleetApi::V2, FleetApi::V3] {
            assert_eq!(api.to_string().parse::<FleetApi>(), Ok(api));
        }
        assert!("v4".parse::<FleetApi>().is_err());
        assert_eq!(FleetApi::default(), FleetApi::V2);
    }
}
