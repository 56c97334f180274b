//! A real single-member etcd per test: free loopback ports, a temporary data
//! directory, logs in a file beside it, killed (by PID) and removed on drop.
//!
//! The binary is `etcd` from `$PATH` (Debian's `etcd-server`, 3.4), or the
//! one named by `$KAYLEE_TEST_ETCD`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{file_tail, wait_timeout};

/// How long etcd gets to answer healthy after a (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM'd etcd gets to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts with fresh ports when a port turned out to be taken.
const PORT_ATTEMPTS: usize = 5;
/// Lines of etcd's log shown in a panic message.
const LOG_TAIL_LINES: usize = 40;

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// How to start etcd; `Default` is v3 only with no extra flags.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Passed as `--enable-v2=<bool>`.
    pub enable_v2: bool,
    /// Appended to etcd's command line after the harness's own flags.
    pub extra_args: Vec<String>,
}

/// A running (or stopped, restartable) single-member etcd.
pub struct Etcd {
    child: Option<Child>,
    name: String,
    client_port: u16,
    peer_port: u16,
    options: EtcdOptions,
    // Declared last: removed after `Drop::drop` has killed the process.
    dir: TempDir,
}

enum Attempt {
    Healthy(Child),
    PortTaken,
}

impl Etcd {
    /// Starts etcd with [`EtcdOptions::default`] and waits until it is healthy.
    pub fn start() -> Etcd {
        Etcd::start_with(EtcdOptions::default())
    }

    /// Starts etcd with `options` and waits until it is healthy; retries on
    /// fresh ports when one was taken in the meantime, panics with the tail
    /// of etcd's log when it does not come up within ~10 s.
    pub fn start_with(options: EtcdOptions) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("kaylee-test-etcd-")
            .tempdir()
            .expect("creating a temporary directory for etcd");
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let mut etcd = Etcd {
            child: None,
            name: format!("kaylee-test-{}-{n}", std::process::id()),
            client_port: 0,
            peer_port: 0,
            options,
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            let (client_port, peer_port) = free_port_pair();
            etcd.client_port = client_port;
            etcd.peer_port = peer_port;
            // A failed attempt may have left a member behind with other ports.
            let data_dir = etcd.data_dir();
            if data_dir.exists() {
                fs::remove_dir_all(&data_dir).expect("clearing etcd's data directory");
            }
            match etcd.spawn_and_wait(false) {
                Attempt::Healthy(child) => {
                    etcd.child = Some(child);
                    return etcd;
                }
                Attempt::PortTaken if attempt < PORT_ATTEMPTS => continue,
                Attempt::PortTaken => panic!(
                    "etcd could not bind free loopback ports in {PORT_ATTEMPTS} attempts; \
                     last log lines ({}):\n{}",
                    etcd.log_path().display(),
                    etcd.log_tail(LOG_TAIL_LINES)
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer port on 127.0.0.1.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The PID of the running etcd process; panics when it is not running
    /// (after [`Etcd::stop`] or [`Etcd::kill`]).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("etcd is not running (stopped or killed)")
    }

    /// Whether the etcd process has been started and has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Whether `GET /health` answers `{"health":"true"}` right now.
    pub fn is_healthy(&self) -> bool {
        health_ok(self.client_port)
    }

    /// The member's data directory (kept across [`Etcd::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that etcd's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last `lines` lines of etcd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// Graceful stop: SIGTERM, then wait (SIGKILL after 10 s). No-op when
    /// not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = pid_of(&child);
            let _ = kill(pid, Signal::SIGTERM);
            // A paused etcd only acts on SIGTERM once continued.
            let _ = kill(pid, Signal::SIGCONT);
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
    }

    /// Hard stop: SIGKILL, then wait. No-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(pid_of(&child), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Freezes the process with SIGSTOP: connections stay open but nothing
    /// answers, as with a hung server.
    pub fn pause(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGSTOP).expect("SIGSTOP etcd");
    }

    /// Undoes [`Etcd::pause`] with SIGCONT.
    pub fn resume(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT).expect("SIGCONT etcd");
    }

    /// Starts etcd again on the same ports with the same data directory
    /// (stopping it gracefully first if it is running) and waits until it is
    /// healthy.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait(true) {
                Attempt::Healthy(child) => {
                    self.child = Some(child);
                    return;
                }
                // Our own old sockets may linger briefly; the port is ours.
                Attempt::PortTaken if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Attempt::PortTaken => panic!(
                    "etcd could not rebind 127.0.0.1:{} / :{} on restart; \
                     last log lines ({}):\n{}",
                    self.client_port,
                    self.peer_port,
                    self.log_path().display(),
                    self.log_tail(LOG_TAIL_LINES)
                ),
            }
        }
    }

    /// `GET path` on the client port (plain HTTP/1.0), e.g. `/health`.
    pub fn http_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_request(self.client_port, "GET", path, None, Duration::from_secs(5))
    }

    /// Puts a v3 key through the gateway (a test needs no client for one).
    pub fn put_v3(&self, key: &str, value: &str) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        let (status, answer) = self
            .http_post("/v3/kv/put", &body)
            .expect("put through the v3 gateway");
        assert_eq!(status, 200, "put {key} answered {status}: {answer}");
    }

    /// `POST path` with a JSON body on the client port, e.g. to the v3 gRPC
    /// gateway (`/v3/kv/put` with base64 keys and values).
    pub fn http_post(&self, path: &str, json: &str) -> io::Result<(u16, String)> {
        http_request(
            self.client_port,
            "POST",
            path,
            Some(json),
            Duration::from_secs(5),
        )
    }

    fn command(&self) -> Command {
        let binary = std::env::var_os("KAYLEE_TEST_ETCD").unwrap_or_else(|| "etcd".into());
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(binary);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{}={peer}", self.name))
            .arg("--initial-cluster-token")
            .arg(&self.name)
            .arg("--initial-cluster-state")
            .arg("new") // ignored once the data directory holds a member
            .arg(format!("--enable-v2={}", self.options.enable_v2))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(&self.options.extra_args);
        cmd
    }

    fn open_log(&self, restart: bool) -> File {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening etcd's log file");
        let _ = writeln!(
            log,
            "=== kaylee test harness: {} etcd on client port {}, peer port {} ===",
            if restart { "restarting" } else { "starting" },
            self.client_port,
            self.peer_port
        );
        log
    }

    fn spawn_and_wait(&self, restart: bool) -> Attempt {
        let log = self.open_log(restart);
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().expect("cloning etcd's log file handle");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(log).stderr(stderr);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => panic!(
                "could not start etcd ({:?}): {e}; install Debian's etcd-server \
                 (deploy/test.sh does) or set KAYLEE_TEST_ETCD",
                cmd.get_program()
            ),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log_since(log_offset);
                if log.contains("address already in use") {
                    return Attempt::PortTaken;
                }
                panic!(
                    "etcd exited with {status} before it was healthy; last log lines ({}):\n{}",
                    self.log_path().display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            // Healthy, and it is really ours: another etcd could hold the port.
            if health_ok(self.client_port) && self.member_is_ours() {
                return Attempt::Healthy(child);
            }
            if Instant::now() >= deadline {
                let _ = kill(pid_of(&child), Signal::SIGKILL);
                let _ = child.wait();
                panic!(
                    "etcd did not become healthy on {} within {START_TIMEOUT:?}; \
                     last log lines ({}):\n{}",
                    self.endpoint(),
                    self.log_path().display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn member_is_ours(&self) -> bool {
        match self.http_post("/v3/cluster/member/list", "{}") {
            Ok((200, body)) => body.contains(&format!("\"{}\"", self.name)),
            _ => false,
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let start = (offset as usize).min(bytes.len());
            text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        }
        text
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Kill by PID and reap; the TempDir field is removed afterwards.
        self.kill();
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}

/// Two distinct ports that were free on 127.0.0.1 a moment ago.
fn free_port_pair() -> (u16, u16) {
    let bind =
        || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free loopback port");
    let a = bind();
    let b = bind();
    let ports = (
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    );
    drop((a, b));
    ports
}

fn health_ok(port: u16) -> bool {
    match http_request(port, "GET", "/health", None, Duration::from_millis(800)) {
        Ok((200, body)) => body.replace(' ', "").contains("\"health\":\"true\""),
        _ => false,
    }
}

/// One plain HTTP/1.0 request to `127.0.0.1:port`; returns the status code
/// and the body. HTTP/1.0 keeps the response unchunked and the connection
/// closing, so reading to the end is enough.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "HTTP response without a header end",
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "HTTP response without a status")
        })?;
    Ok((status, body.to_string()))
}
