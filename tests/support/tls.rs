//! An etcd that only speaks TLS and wants client certificates, with a
//! throwaway CA made for the test (no openssl needed). The harness's
//! [`super::etcd::Etcd`] serves plain HTTP, so this one is spawned here;
//! its health is read on a plain-HTTP metrics port.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// PEM files: `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key`.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kaylee-test-pki-")
            .tempdir()
            .expect("temp dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "kaylee test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        let leaves = [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            (
                "client",
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            ),
        ];
        for (name, names, usages) in leaves {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &ca).expect("certificate");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                .expect("write");
        }
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The CA, the client certificate and the client key.
    pub fn client_files(&self) -> (String, String, String) {
        (
            self.path("ca.pem"),
            self.path("client.pem"),
            self.path("client.key"),
        )
    }

    /// `--etcd-cacert … --etcd-cert … --etcd-key …` for the client
    /// certificate.
    pub fn client_flags(&self) -> Vec<String> {
        [
            ("--etcd-cacert", "ca.pem"),
            ("--etcd-cert", "client.pem"),
            ("--etcd-key", "client.key"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_string(), self.path(file)])
        .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

pub struct TlsEtcd {
    child: Option<Child>,
    pub endpoint: String,
    log: PathBuf,
    _dir: TempDir,
}

impl TlsEtcd {
    /// Starts etcd (with v2 enabled) on `https://127.0.0.1:<port>`,
    /// requiring a client certificate signed by `pki`'s CA.
    pub fn start(pki: &Pki) -> TlsEtcd {
        let dir = tempfile::Builder::new()
            .prefix("kaylee-test-etcd-tls-")
            .tempdir()
            .expect("temp dir");
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let endpoint = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let binary = std::env::var_os("KAYLEE_TEST_ETCD").unwrap_or_else(|| "etcd".into());
        let child = Command::new(binary)
            .args(["--name", "tls", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("tls={peer_url}")])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{metrics}"),
            ])
            .args(["--cert-file", &pki.path("server.pem")])
            .args(["--key-file", &pki.path("server.key")])
            .args(["--trusted-ca-file", &pki.path("ca.pem")])
            .args(["--client-cert-auth", "--enable-v2=true", "--logger=zap"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning etcd");
        let mut etcd = TlsEtcd {
            child: Some(child),
            endpoint,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health =
                super::etcd::http_request(metrics, "GET", "/health", None, Duration::from_secs(1));
            if matches!(health, Ok((200, ref body)) if body.contains("true")) {
                return etcd;
            }
            let exited = etcd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "TLS etcd did not come up:\n{}",
                    super::file_tail(&etcd.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}
