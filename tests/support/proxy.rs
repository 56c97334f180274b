//! A TCP front for a server that a test can cut off: every open connection
//! dropped and new ones refused until it is restored. For breaking
//! long-lived streams (Docker's event stream, an etcd watch) while the
//! server itself keeps running.
//!
//! The proxy runs on the calling test's Tokio runtime.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a [`Proxy`] forwards its connections to.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A Unix socket, such as `/var/run/docker.sock`.
    Unix(PathBuf),
    /// A TCP address, `host:port`.
    Tcp(String),
}

/// A TCP listener on 127.0.0.1 forwarding every connection to an
/// [`Upstream`]; cut on drop.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

/// One lock for both, so no connection slips in while a cut happens.
struct State {
    accepting: bool,
    /// Cancelled to drop the connections opened since the last cut.
    connections: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`. A
    /// connection that the upstream refuses is closed at once.
    pub async fn start(upstream: Upstream) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding the proxy to a free loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(Mutex::new(State {
            accepting: true,
            connections: CancellationToken::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = {
                    let state = shared.lock().expect("proxy lock");
                    if !state.accepting {
                        continue; // cut: dropped, so closed at once
                    }
                    state.connections.clone()
                };
                tokio::spawn(forward(client, upstream.clone(), cut));
            }
        });
        Proxy { addr, state, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy lock");
        state.accepting = false;
        std::mem::take(&mut state.connections).cancel();
    }

    /// Accepts and forwards connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.state.lock().expect("proxy lock").accepting = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Not `cut`: no second panic while a failed test unwinds.
        if let Ok(mut state) = self.state.lock() {
            state.accepting = false;
            std::mem::take(&mut state.connections).cancel();
        }
    }
}

/// Copies both ways between `client` and a new connection to `upstream`
/// until either side closes or `cut` is cancelled.
async fn forward(mut client: TcpStream, upstream: Upstream, cut: CancellationToken) {
    match upstream {
        Upstream::Unix(path) => {
            let Ok(mut server) = UnixStream::connect(&path).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.cancelled() => {}
            }
        }
        Upstream::Tcp(addr) => {
            let Ok(mut server) = TcpStream::connect(&addr).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.cancelled() => {}
            }
        }
    }
}
