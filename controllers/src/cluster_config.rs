//! The settings that shape unit text, kept once for the whole cluster.
//!
//! The unit prefix and the network unit end up in every fleet unit's name
//! or text (and so in its spec hash). Two servers that disagree on them
//! would each replace every unit of the cluster when they take over, and
//! `kaylee render` would print other units than the servers write. So they
//! live in one etcd v3 key, `<etcd-prefix>/config` (default
//! `/kaylee/config`), JSON:
//!
//! ```json
//! {"unitPrefix":"k","networkUnit":"flanneld.service"}
//! ```
//!
//! The first server to start writes its flags there (create-if-absent, in
//! one transaction); every other server, and `kaylee render`, uses what is
//! stored. The rendering format itself is the code's (`RENDER_FORMAT`).

use crate::etcd::v2::{V2Client, V2Error, wire};
use crate::etcd::{EtcdConfig, EtcdError};
use crate::fleet::RenderOptions;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::{Map, Value, json};
use thiserror::Error;

/// The key under Kaylee's etcd prefix.
pub fn key(etcd: &EtcdConfig) -> String {
    crate::keys::KayleeKeys::new(&etcd.prefix).config()
}

/// Why the cluster's settings could not be read or seeded.
#[derive(Debug, Error)]
pub enum ClusterConfigError {
    /// etcd failed, timed out or refused the credentials.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The stored value cannot be used; `key` names it.
    #[error(
        "{key}: {why} (fix it with etcdctl, or delete it and the next server to start writes its flags there)"
    )]
    Invalid {
        /// The etcd key read (`<etcd-prefix>/config`).
        key: String,
        /// What is wrong: not JSON, a missing or mistyped field, an unknown
        /// field, or a setting [`RenderOptions::validate`] refuses.
        why: String,
    },
}

/// Where the settings in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the cluster's key.
    Cluster,
    /// There was none: this server wrote its flags as the cluster's.
    Seeded,
}

/// The settings to render with, and how they relate to the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The settings to render with: the cluster's, or the flags when they
    /// seeded it.
    pub options: RenderOptions,
    /// Whether `options` were read or seeded.
    pub source: Source,
    /// `field: flag value → cluster value` for each setting the flags
    /// disagree on (empty when seeded or equal).
    pub overridden: Vec<String>,
}

/// The stored form: every setting, camelCase, in this order.
pub fn to_json(options: &RenderOptions) -> String {
    json!({
        "unitPrefix": options.unit_prefix,
        "networkUnit": options.network_unit,
    })
    .to_string()
}

/// Reads a stored value. Unknown fields are refused: a newer Kaylee may
/// have added a setting that shapes unit text, and rendering without it
/// would write other units than that server.
pub fn parse(bytes: &[u8], key: &str) -> Result<RenderOptions, ClusterConfigError> {
    let invalid = |why: String| ClusterConfigError::Invalid {
        key: key.to_string(),
        why,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(invalid("expected a JSON object".into()));
    };
    let text = |fields: &Map<String, Value>, name: &str| match fields.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(format!("{name}: expected a string, found {other}"))),
        None => Err(invalid(format!("{name}: is required"))),
    };
    let options = RenderOptions {
        unit_prefix: text(&fields, "unitPrefix")?,
        network_unit: text(&fields, "networkUnit")?,
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "unitPrefix" | "networkUnit"))
    {
        return Err(invalid(format!(
            "{unknown}: unknown field (written by a newer Kaylee?)"
        )));
    }
    options.validate().map_err(invalid)?;
    Ok(options)
}

/// What the cluster's key holds, if anything.
pub async fn read(
    client: &Client,
    etcd: &EtcdConfig,
) -> Result<Option<RenderOptions>, ClusterConfigError> {
    let key = key(etcd);
    let mut kv = client.kv_client();
    let resp = etcd.timed(kv.get(key.clone(), None)).await?;
    match resp.kvs().first() {
        None => Ok(None),
        Some(kv) => parse(kv.value(), &key).map(Some),
    }
}

/// For a server at start-up, before it campaigns: the cluster's settings,
/// written from `flags` when the cluster has none yet (create-if-absent,
/// so of two servers starting at once exactly one seeds it).
pub async fn seed_or_read(
    client: &Client,
    etcd: &EtcdConfig,
    flags: &RenderOptions,
) -> Result<Effective, ClusterConfigError> {
    let key = key(etcd);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), to_json(flags), None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let mut kv = client.kv_client();
    let resp = etcd.timed(kv.txn(txn)).await?;
    if resp.succeeded() {
        return Ok(Effective {
            options: flags.clone(),
            source: Source::Seeded,
            overridden: Vec::new(),
        });
    }
    let stored = resp.op_responses().into_iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    // Deleted between the compare and the get cannot happen within one
    // transaction; an empty answer would be etcd's bug, said as such.
    let bytes = stored.ok_or_else(|| ClusterConfigError::Invalid {
        key: key.clone(),
        why: "etcd answered the read with no value".into(),
    })?;
    let options = parse(&bytes, &key)?;
    Ok(Effective {
        overridden: differences(flags, &options),
        options,
        source: Source::Cluster,
    })
}

/// Each setting `flags` has otherwise than `cluster`, for a log line.
pub fn differences(flags: &RenderOptions, cluster: &RenderOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |name: &str, flag: &str, stored: &str| {
        if flag != stored {
            out.push(format!("{name}: flag {flag:?}, cluster {stored:?}"));
        }
    };
    compare("unitPrefix", &flags.unit_prefix, &cluster.unit_prefix);
    compare("networkUnit", &flags.network_unit, &cluster.network_unit);
    out
}

/// The network unit Kaylee defaults to, whose daemon can be seen in etcd.
pub const FLANNEL_UNIT: &str = "flanneld.service";
/// Where flanneld keeps its hosts' subnet leases (flannel's default
/// `--etcd-prefix`, `/coreos.com/network`, then `subnets/`): a cluster
/// whose flanneld runs has one per host.
pub const FLANNEL_SUBNETS: &str = "/coreos.com/network/subnets";

/// Whether any flanneld has a subnet lease in this etcd: flannel of
/// fleet's era wrote them through the v2 API, later ones through v3.
/// `Some(false)` only when v3 has none and v2 has none or is not served
/// (then no flanneld of that era can use this etcd); `None` when it cannot
/// tell (an error, a role without access), so nothing is claimed.
pub async fn flannel_leases(client: &Client, etcd: &EtcdConfig) -> Option<bool> {
    let mut kv = client.kv_client();
    let options = GetOptions::new().with_prefix().with_count_only();
    let v3 = etcd
        .timed(kv.get(format!("{FLANNEL_SUBNETS}/"), Some(options)))
        .await
        .ok()
        .map(|resp| resp.count() > 0);
    if v3 != Some(false) {
        return v3;
    }
    let v2 = V2Client::new(etcd).ok()?;
    match v2.get(FLANNEL_SUBNETS, true).await {
        Ok(answer) => Some(!answer.node.leaves().is_empty()),
        Err(e) if e.code() == Some(wire::code::KEY_NOT_FOUND) => Some(false),
        Err(V2Error::Protocol { status: 404, .. }) => Some(false),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips() {
        let options = RenderOptions {
            unit_prefix: "kay".into(),
            network_unit: String::new(),
        };
        let text = to_json(&options);
        assert_eq!(text, r#"{"unitPrefix":"kay","networkUnit":""}"#);
        assert_eq!(parse(text.as_bytes(), "/kaylee/config").unwrap(), options);
    }

    #[test]
    fn bad_values_name_the_key_and_field() {
        let err = |text: &str| {
            parse(text.as_bytes(), "/kaylee/config")
                .unwrap_err()
                .to_string()
        };
        assert!(err("{").starts_with("/kaylee/config: not JSON"));
        assert!(err("[]").contains("expected a JSON object"));
        assert!(err(r#"{"networkUnit":""}"#).contains("unitPrefix: is required"));
        assert!(
            err(r#"{"unitPrefix":1,"networkUnit":""}"#)
                .contains("unitPrefix: expected a string, found 1")
        );
        assert!(
            err(r#"{"unitPrefix":"a:b","networkUnit":""}"#).contains("unit prefix `a:b` must be")
        );
        assert!(
            err(r#"{"unitPrefix":"k","networkUnit":"","dockerPath":"/x"}"#)
                .contains("dockerPath: unknown field")
        );
    }

    #[test]
    fn differences_name_each_setting() {
        let cluster = RenderOptions::default();
        let flags = RenderOptions {
            network_unit: String::new(),
            ..RenderOptions::default()
        };
        assert_eq!(
            differences(&flags, &cluster),
            [r#"networkUnit: flag "", cluster "flanneld.service""#]
        );
        assert!(differences(&cluster, &cluster).is_empty());
    }
}
