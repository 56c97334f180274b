//! How every command reaches etcd: endpoints, TLS, auth and timeouts. The
//! client connects lazily and would queue a request forever when no endpoint
//! answers, so every call made through [`timed`] has a deadline and the
//! connection is probed once up front.

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// etcd's client URLs on this host, comma separated, as the CoreOS etcd of
/// fleet's era served them: the legacy port 4001 and the IANA port 2379.
/// `--etcd-endpoints` (or `ETCDCTL_ENDPOINTS`) replaces them.
pub const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:4001,http://127.0.0.1:2379";

/// How to reach etcd: the global flags every command shares, which read the
/// same environment variables as etcdctl (`ETCDCTL_ENDPOINTS`, …).
/// [`Default`] is [`DEFAULT_ENDPOINTS`], `/kaylee`, no TLS or auth, a 3 s
/// dial and a 5 s request timeout.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, `http://host:port` or `https://host:port` (all https
    /// when TLS is configured). Those that do not answer at connect time
    /// are left out; none given is an [`EtcdError::Config`].
    pub endpoints: Vec<String>,
    /// Kaylee's key prefix, `/kaylee` by default (no trailing slash).
    pub prefix: String,
    /// PEM file of the CA that signed etcd's server certificate
    /// (`--etcd-cacert`). The client is built without system or built-in
    /// roots, so an `https://` etcd needs it. Any of the three TLS files
    /// turns TLS on.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate (`--etcd-cert`); only together with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (`--etcd-key`); only together with `cert`.
    pub key: Option<PathBuf>,
    /// `user:password` for etcd's authentication (`--etcd-user`, split at
    /// the first `:`); `None`: no authentication.
    pub user: Option<String>,
    /// How long dialing one endpoint may take (`--etcd-dial-timeout`,
    /// default 3 s). A probe of an endpoint gets this plus
    /// `request_timeout`.
    pub connect_timeout: Duration,
    /// The deadline of every single etcd call made through
    /// [`EtcdConfig::timed`] (`--etcd-request-timeout`, default 5 s); also
    /// the client's own per-request timeout. Watches are bounded only
    /// while they open.
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: DEFAULT_ENDPOINTS.split(',').map(str::to_string).collect(),
            prefix: "/kaylee".into(),
            ca_cert: None,
            cert: None,
            key: None,
            user: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an etcd call failed. [`EtcdError::is_auth`] tells credentials apart
/// from outages.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// A call (or a connect) got no answer within its deadline.
    #[error("etcd did not answer within {timeout:?} (endpoints: {endpoints})")]
    Timeout {
        /// The deadline that ran out.
        timeout: Duration,
        /// Every configured endpoint, comma separated, for the message.
        endpoints: String,
    },
    /// No endpoint answered at connect time: each `endpoint (reason)`,
    /// comma separated.
    #[error("cannot reach etcd: {0}")]
    Unreachable(String),
    /// etcd refused who we are (bad password, unknown user, invalid token,
    /// permission denied): etcd's message.
    #[error("etcd refused the credentials: {0} (check --etcd-user / ETCDCTL_USER)")]
    Auth(String),
    /// The settings cannot work (no endpoints, `user` without `:`, a
    /// certificate without its key, an unreadable PEM file, TLS with an
    /// `http://` endpoint), found before anything is sent.
    #[error("etcd settings: {0}")]
    Config(String),
    /// Any other error of the v3 client, including gRPC statuses etcd
    /// answered with.
    #[error("etcd: {}", describe(.0))]
    Client(#[from] etcd_client::Error),
    /// An error of etcd's v2 keys API (fleet's registry, flannel's leases).
    #[error(transparent)]
    V2(#[from] super::v2::V2Error),
}

impl EtcdError {
    /// Whether the etcd cluster refused us for who we are (wrong password,
    /// missing role) rather than for being unreachable.
    pub fn is_auth(&self) -> bool {
        match self {
            EtcdError::Auth(_) => true,
            EtcdError::Client(etcd_client::Error::GRpcStatus(s)) => {
                matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) || is_auth_message(s.message())
            }
            EtcdError::V2(super::v2::V2Error::Unauthorized { .. }) => true,
            _ => false,
        }
    }
}

impl EtcdConfig {
    /// The endpoints comma separated, as given, for messages and logs.
    pub fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(user) = &self.user {
            let (name, password) = user
                .split_once(':')
                .ok_or_else(|| EtcdError::Config("--etcd-user must be user:password".into()))?;
            o = o.with_user(name, password);
        }
        if self.ca_cert.is_some() || self.cert.is_some() || self.key.is_some() {
            o = o.with_tls(self.tls()?);
        }
        Ok(o)
    }

    fn tls(&self) -> Result<TlsOptions, EtcdError> {
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| EtcdError::Config(format!("cannot read {}: {e}", p.display())))
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?))
            }
            (None, None) => {}
            _ => {
                return Err(EtcdError::Config(
                    "--etcd-cert and --etcd-key go together".into(),
                ));
            }
        }
        if let Some(e) = self.endpoints.iter().find(|e| e.starts_with("http://")) {
            return Err(EtcdError::Config(format!(
                "TLS is configured but endpoint {e} is plain http://; use https://"
            )));
        }
        Ok(tls)
    }

    /// Connects to the endpoints that answer. The client balances requests
    /// over every endpoint it is given and fails those routed to a dead
    /// one, so each endpoint is probed on its own first and only live ones
    /// are used; none alive is a clear error within the dial timeout.
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::Config("no etcd endpoints given".into()));
        }
        let options = self.options()?;
        let probes = self
            .endpoints
            .iter()
            .map(|e| async { (e.clone(), self.probe(e, &options).await) });
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (endpoint, result) in futures::future::join_all(probes).await {
            match result {
                Ok(()) => live.push(endpoint),
                // Wrong credentials are not an outage: say so at once.
                Err(EtcdError::Client(etcd_client::Error::GRpcStatus(s)))
                    if is_auth_message(s.message()) =>
                {
                    return Err(EtcdError::Auth(s.message().to_string()));
                }
                Err(e) if e.is_auth() => return Err(e),
                Err(e) => dead.push(format!("{endpoint} ({})", short_reason(&e))),
            }
        }
        if live.is_empty() {
            return Err(EtcdError::Unreachable(dead.join(", ")));
        }
        if !dead.is_empty() {
            tracing::info!(unreachable = %dead.join(", "), "using only the etcd endpoints that answer");
        }
        let deadline = self.connect_timeout + self.request_timeout;
        self.timed_for(deadline, Client::connect(live, Some(options)))
            .await
    }

    async fn probe(&self, endpoint: &str, options: &ConnectOptions) -> Result<(), EtcdError> {
        let deadline = self.connect_timeout + self.request_timeout;
        let client = self
            .timed_for(deadline, Client::connect([endpoint], Some(options.clone())))
            .await?;
        let mut kv = client.kv_client();
        let probe = crate::keys::KayleeKeys::new(&self.prefix).probe();
        self.timed(kv.get(probe, None)).await?;
        Ok(())
    }

    /// Runs one etcd call with the request deadline.
    pub async fn timed<T, F>(&self, call: F) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.timed_for(self.request_timeout, call).await
    }

    async fn timed_for<T, F>(&self, limit: Duration, call: F) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(limit, call).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(EtcdError::Timeout {
                timeout: limit,
                endpoints: self.endpoints_display(),
            }),
        }
    }
}

/// etcd answers a bad password, a missing user or a missing token with
/// `InvalidArgument` rather than an auth status code; its messages say it.
fn is_auth_message(message: &str) -> bool {
    [
        "authentication failed",
        "user name is empty",
        "invalid auth token",
        "permission denied",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The innermost cause of a client error: "Connection refused (os error
/// 111)" says more than tonic's wrapping of it.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => {
            format!("unavailable: {}", innermost(s))
        }
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

fn short_reason(e: &EtcdError) -> String {
    match e {
        EtcdError::Client(c) => describe(c),
        EtcdError::Timeout { timeout, .. } => format!("no answer within {timeout:?}"),
        other => other.to_string(),
    }
}
