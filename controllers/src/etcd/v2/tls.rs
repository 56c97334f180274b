//! The HTTP client behind the v2 API, with the same TLS and timeouts as the
//! v3 (gRPC) client: `--etcd-cacert` as the only trusted root when given
//! (else the system's), `--etcd-cert`/`--etcd-key` as client identity.

use super::V2Error;
use crate::etcd::EtcdConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config_error(e: impl std::fmt::Display) -> V2Error {
    V2Error::Config(e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, V2Error> {
    std::fs::read(path).map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))
}

fn tls_config(config: &EtcdConfig) -> Result<ClientConfig, V2Error> {
    // ring, as the gRPC client uses: one crypto provider in the binary.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &config.ca_cert {
        Some(ca) => {
            let pem = read(ca)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| config_error(format!("{}: not a PEM CA: {e}", ca.display())))?;
                roots.add(cert).map_err(|e| {
                    config_error(format!("{}: unusable CA certificate: {e}", ca.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(config_error(format!(
                    "{}: no certificate found",
                    ca.display()
                )));
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_platform_verifier().map_err(config_error)?,
    };
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(format!("{}: {e}", cert.display())))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| config_error(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| config_error(format!("--etcd-cert/--etcd-key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(config_error("--etcd-cert and --etcd-key go together")),
    }
}

/// The HTTP clients of a [`super::V2Client`], refusing settings the v3
/// client would refuse too: one for requests, one for streaming watches
/// (whose connections the watch reader's thread drives), built on one TLS
/// configuration, so certificates and keys are read once.
pub fn http_clients(config: &EtcdConfig) -> Result<[reqwest::Client; 2], V2Error> {
    let tls_wanted = config.ca_cert.is_some() || config.cert.is_some() || config.key.is_some();
    if tls_wanted && let Some(e) = config.endpoints.iter().find(|e| e.starts_with("http://")) {
        return Err(config_error(format!(
            "TLS is configured but endpoint {e} is plain http://; use https://"
        )));
    }
    let tls = tls_config(config)?;
    let client = |tls: ClientConfig| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .tcp_keepalive(Duration::from_secs(10))
            // etcd clients talk to etcd directly, as the gRPC client does.
            .no_proxy()
            .build()
            .map_err(config_error)
    };
    Ok([client(tls.clone())?, client(tls)?])
}
