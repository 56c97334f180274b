//! Reaching the local Docker engine, and reading what the registrator needs
//! out of Docker's answers.

use super::RegistratorError;
use bollard::Docker;
use bollard::models::EndpointSettings;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// The engine used when neither a flag nor `$DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Deadline for one Docker request (the event stream excepted).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The Docker host to use: `explicit` (a `--docker-host` flag) if given and
/// non-empty, else `$DOCKER_HOST`, else the local socket
/// `unix:///var/run/docker.sock`.
pub fn docker_host(explicit: Option<&str>) -> String {
    explicit
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| {
            std::env::var("DOCKER_HOST")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
}

/// Connects to the Docker engine at [`docker_host`]`(explicit)` and checks
/// that it answers, agreeing on an API version it supports (the engine may
/// be older than this client).
pub async fn connect_docker(explicit: Option<&str>) -> Result<Docker, RegistratorError> {
    let host = docker_host(explicit);
    // Accept a bare socket path as well as `unix://path`.
    let uri = if host.starts_with('/') {
        format!("unix://{host}")
    } else {
        host.clone()
    };
    let docker = Docker::connect_with_host(&uri).map_err(|e| match e {
        bollard::errors::Error::SocketNotFoundError(_) => RegistratorError::NoDockerEngine {
            host: host.clone(),
            reason: e.to_string(),
        },
        _ => RegistratorError::DockerHost {
            host: host.clone(),
            reason: e.to_string(),
        },
    })?;
    match tokio::time::timeout(DOCKER_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(RegistratorError::NoDockerEngine {
            host,
            reason: e.to_string(),
        }),
        Err(_) => Err(RegistratorError::NoDockerEngine {
            host,
            reason: format!("no answer within {DOCKER_TIMEOUT:?}"),
        }),
    }
}

/// Runs one Docker request with [`DOCKER_TIMEOUT`].
pub(crate) async fn timed<T, F>(call: F) -> Result<T, RegistratorError>
where
    F: Future<Output = Result<T, bollard::errors::Error>>,
{
    match tokio::time::timeout(DOCKER_TIMEOUT, call).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RegistratorError::DockerTimeout(DOCKER_TIMEOUT)),
    }
}

/// Whether a Docker error says the container does not exist.
pub(crate) fn is_not_found(e: &RegistratorError) -> bool {
    matches!(
        e,
        RegistratorError::Docker(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        })
    )
}

/// The address to register for a container: the default bridge's IP (what
/// Docker reports as `NetworkSettings.IPAddress`), else the IP on the first
/// network, by name, that has one. `None` when no network has assigned one.
pub fn container_ip(networks: Option<&HashMap<String, EndpointSettings>>) -> Option<String> {
    let networks = networks?;
    let ip = |e: &EndpointSettings| {
        e.ip_address
            .as_deref()
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
    };
    if let Some(ip) = networks.get("bridge").and_then(ip) {
        return Some(ip);
    }
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names.into_iter().find_map(|n| networks.get(n).and_then(ip))
}

/// Where a container can be reached, by its network mode and networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Its own IP on a network.
    Ip(String),
    /// `--net=host`: the machine's own address.
    HostNetwork,
    /// `--net=none`: nowhere; nothing to register.
    NoNetwork,
    /// Networks assign no IP yet (a moment after start).
    NotYet,
}

/// The address of a container with `network_mode` (Docker's
/// `HostConfig.NetworkMode`) and `networks`.
pub fn address(
    network_mode: Option<&str>,
    networks: Option<&HashMap<String, EndpointSettings>>,
) -> Address {
    match network_mode {
        Some("host") => Address::HostNetwork,
        Some("none") => Address::NoNetwork,
        _ => container_ip(networks).map_or(Address::NotYet, Address::Ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str) -> EndpointSettings {
        EndpointSettings {
            ip_address: Some(ip.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn bridge_ip_first() {
        let nets = HashMap::from([
            ("aaa".to_string(), net("10.0.0.9")),
            ("bridge".to_string(), net("172.17.0.2")),
        ]);
        assert_eq!(container_ip(Some(&nets)).as_deref(), Some("172.17.0.2"));
    }

    #[test]
    fn else_first_network_by_name_with_an_ip() {
        let nets = HashMap::from([
            ("zzz".to_string(), net("10.0.0.3")),
            ("mmm".to_string(), net("10.0.0.2")),
            ("aaa".to_string(), net("")),
            ("bridge".to_string(), net("")),
        ]);
        assert_eq!(container_ip(Some(&nets)).as_deref(), Some("10.0.0.2"));
    }

    #[test]
    fn no_ip() {
        assert_eq!(container_ip(None), None);
        assert_eq!(container_ip(Some(&HashMap::new())), None);
        let host = HashMap::from([("host".to_string(), EndpointSettings::default())]);
        assert_eq!(container_ip(Some(&host)), None);
    }

    #[test]
    fn host_and_none_networks_are_told_apart() {
        let nets = HashMap::from([("host".to_string(), EndpointSettings::default())]);
        assert_eq!(address(Some("host"), Some(&nets)), Address::HostNetwork);
        assert_eq!(address(Some("none"), None), Address::NoNetwork);
        assert_eq!(address(Some("default"), None), Address::NotYet);
        let bridge = HashMap::from([("bridge".to_string(), net("172.17.0.2"))]);
        assert_eq!(
            address(Some("default"), Some(&bridge)),
            Address::Ip("172.17.0.2".into())
        );
    }

    #[test]
    fn explicit_host_wins() {
        assert_eq!(docker_host(Some("tcp://h:2375")), "tcp://h:2375");
    }
}
