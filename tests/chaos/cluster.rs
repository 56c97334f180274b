//! The `kaylee server` processes under chaos: who leads (from etcd's
//! leader keys), killing, terminating and freezing the leader, starting
//! replacements, and what the logs of every server that ever ran say.

use super::fence::{LEADER_DIR, Outage};
use super::report::{Report, bump};
use crate::support::fleet::Api;
use crate::support::kaylee::Server;
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const FENCE_REFUSED: &str = "write refused by the leader fence";
/// The v3 registry's debug line for each fleet transaction, with its
/// revision.
const COMMITTED: &str = "fleet transaction committed";
const LEADING: &str = "kaylee_controllers::server: leading ";
/// Time for requests a signalled server had already sent to land before
/// the test notes the revision from which it could not have written.
const IN_FLIGHT: Duration = Duration::from_millis(500);

pub struct Cluster {
    endpoint: String,
    api: Api,
    flags: Vec<String>,
    client: Client,
    servers: Vec<Server>,
    started: usize,
    /// Summed over the logs of servers that are gone.
    pub refused: usize,
    pub terms: usize,
    pub panics: Vec<String>,
    /// Revision of each fleet transaction → the server that logged it.
    pub commits: BTreeMap<i64, String>,
}

impl Cluster {
    pub fn new(endpoint: &str, api: Api, flags: &[&str], client: Client) -> Cluster {
        Cluster {
            endpoint: endpoint.to_string(),
            api,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            client,
            servers: Vec::new(),
            started: 0,
            refused: 0,
            terms: 0,
            panics: Vec::new(),
            commits: BTreeMap::new(),
        }
    }

    pub fn spawn(&mut self) {
        self.started += 1;
        let name = format!("s{}", self.started);
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let server = Server::start_on(&self.endpoint, &name, self.api, &flags);
        self.servers.push(server);
    }

    pub fn started(&self) -> usize {
        self.started
    }

    /// The value of the leader key with the lowest create revision.
    async fn leader(&self) -> Option<String> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let mut kv = self.client.kv_client();
        let call = kv.get(LEADER_DIR, Some(opts));
        let resp = tokio::time::timeout(Duration::from_secs(3), call)
            .await
            .ok()?
            .ok()?;
        let first = resp.kvs().first()?;
        Some(String::from_utf8_lossy(first.value()).into_owned())
    }

    /// Waits until a live server holds the leader key (a dead one's key
    /// lingers until its lease runs out).
    pub async fn wait_live_leader(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(name) = self.leader().await
                && self.servers.iter().any(|s| s.name == name)
            {
                return Some(name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// etcd's current revision, waiting out an etcd that does not answer.
    pub async fn revision(&self) -> i64 {
        loop {
            let mut kv = self.client.kv_client();
            let call = kv.get("/", Some(GetOptions::new().with_keys_only().with_limit(1)));
            if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(3), call).await
                && let Some(h) = resp.header()
            {
                return h.revision();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn take(&mut self, name: &str) -> Server {
        let i = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .expect("a live server");
        self.servers.remove(i)
    }

    /// SIGKILL: the leader key lingers for the lease TTL, and nobody may
    /// write until it is gone.
    pub async fn sigkill(&mut self, name: &str, report: &Report) -> Outage {
        let mut server = self.take(name);
        server.signal(Signal::SIGKILL);
        tokio::task::block_in_place(|| server.try_wait_exit(Duration::from_secs(10)));
        bump(&report.counters.sigkill);
        self.bury(server);
        self.spawn();
        tokio::time::sleep(IN_FLIGHT).await;
        Outage {
            server: name.to_string(),
            from: self.revision().await,
            to: i64::MAX,
            how: "SIGKILLed",
        }
    }

    /// SIGTERM: the leader resigns and exits; a server that does not exit
    /// is a violation (and is killed). A write it had in flight as it
    /// exited may land without its log line, as with SIGKILL.
    pub async fn sigterm(&mut self, name: &str, report: &Report) -> Outage {
        let mut server = self.take(name);
        server.signal(Signal::SIGTERM);
        let exited = tokio::task::block_in_place(|| server.try_wait_exit(Duration::from_secs(15)));
        if !exited {
            report.violation(
                &format!("sigterm:{name}"),
                format!("{name} did not exit within 15 s of SIGTERM"),
            );
        }
        bump(&report.counters.sigterm);
        self.bury(server);
        self.spawn();
        Outage {
            server: name.to_string(),
            from: self.revision().await,
            to: i64::MAX,
            how: "exited on SIGTERM",
        }
    }

    /// SIGSTOP for `hold` (longer than the lease), then SIGCONT: the frozen
    /// leader's lease expires under it, another server leads, and when it
    /// wakes its writes must be refused by the fence.
    pub async fn pause(&mut self, name: &str, hold: Duration, report: &Report) -> Outage {
        let i = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .expect("a live server");
        self.servers[i].signal(Signal::SIGSTOP);
        tokio::time::sleep(IN_FLIGHT).await;
        let from = self.revision().await;
        tokio::time::sleep(hold.saturating_sub(IN_FLIGHT)).await;
        let to = self.revision().await;
        self.servers[i].signal(Signal::SIGCONT);
        bump(&report.counters.pauses);
        Outage {
            server: name.to_string(),
            from,
            to,
            how: "frozen",
        }
    }

    /// Counts what a server's log says, then lets it go (killed if still
    /// running).
    fn bury(&mut self, server: Server) {
        let log = server.log();
        self.refused += log.matches(FENCE_REFUSED).count();
        self.terms += log.matches(LEADING).count();
        for line in log.lines().filter(|l| l.contains(COMMITTED)) {
            let revision = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("revision="))
                .and_then(|r| r.parse::<i64>().ok());
            if let Some(r) = revision {
                self.commits.insert(r, server.name.clone());
            }
        }
        if let Some(at) = log.find("panicked at") {
            let end = log[at..].find('\n').map_or(log.len(), |e| at + e);
            self.panics
                .push(format!("{}: {}", server.name, &log[at..end]));
        }
    }

    /// Buries every server still running (checking each is still alive:
    /// a server that exited on its own crashed).
    pub fn finish(&mut self, report: &Report) {
        for mut server in std::mem::take(&mut self.servers) {
            if server.exited() {
                report.violation(
                    &format!("exited:{}", server.name),
                    format!(
                        "{} exited on its own:\n{}",
                        server.name,
                        tail(&server.log())
                    ),
                );
            }
            self.bury(server);
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
