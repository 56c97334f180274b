//! TLS and auth failures say what is wrong, and a least-privilege etcd role
//! (the Kaylee and fleet prefixes only) is all a server needs.

mod support;

use etcd_client::{Client, ConnectOptions, Permission};
use std::time::Duration;
use support::etcd::Etcd;
use support::fleet::{Api, FleetView};
use support::kaylee::{Server, cli, cli_ok};
use support::tls::{Pki, TlsEtcd};

const WAIT: Duration = Duration::from_secs(20);

fn fails_with(endpoint: &str, args: &[&str], expected: &[&str]) {
    let out = cli(endpoint, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{args:?}: expected {e:?} in {stderr}");
    }
}

#[test]
fn tls_mistakes_are_reported_clearly() {
    let pki = Pki::new();
    let etcd = TlsEtcd::start(&pki);
    let (ca, cert, key) = pki.client_files();
    let flags = pki.client_flags();
    let right: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut ls = right.to_vec();
    ls.push("ls");
    cli_ok(&etcd.endpoint, &ls);

    // No client certificate: etcd ends the handshake.
    fails_with(
        &etcd.endpoint,
        &["--etcd-cacert", &ca, "ls"],
        &["cannot reach etcd", &etcd.endpoint],
    );
    // A CA that did not sign etcd's certificate.
    let other = Pki::new();
    let wrong_ca = other.path("ca.pem");
    fails_with(
        &etcd.endpoint,
        &[
            "--etcd-cacert",
            &wrong_ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
            "ls",
        ],
        &["cannot reach etcd", "certificate"],
    );
    // A key without its certificate, and a file that does not exist.
    let out = cli(
        &etcd.endpoint,
        &["--etcd-cacert", &ca, "--etcd-key", &key, "ls"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--etcd-cert and --etcd-key go together")
    );
    fails_with(
        &etcd.endpoint,
        &["--etcd-cacert", "/nonexistent/ca.pem", "ls"],
        &["/nonexistent/ca.pem"],
    );
    // Plain http:// with TLS settings.
    let plain = etcd.endpoint.replace("https://", "http://");
    fails_with(
        &plain,
        &right.iter().copied().chain(["ls"]).collect::<Vec<_>>(),
        &["use https://"],
    );
}

/// Turns on v3 auth with a root user and a `kaylee` user whose role reaches
/// only Kaylee's and fleet's prefixes.
async fn least_privilege(endpoint: &str) {
    let mut c = Client::connect([endpoint], None).await.expect("connect");
    c.user_add("root", "rootpw", None).await.expect("root");
    c.user_grant_role("root", "root").await.expect("root role");
    c.role_add("kaylee").await.expect("role");
    for prefix in ["/kaylee/", "/_coreos.com/fleet/"] {
        let end = format!("{}0", prefix.trim_end_matches('/'));
        let perm = Permission::read_write(prefix).with_range_end(end);
        c.role_grant_permission("kaylee", perm)
            .await
            .expect("grant");
    }
    c.user_add("kaylee", "kpw", None).await.expect("user");
    c.user_grant_role("kaylee", "kaylee")
        .await
        .expect("grant role");
    c.auth_enable().await.expect("auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_user_runs_everything_and_bad_credentials_are_named() {
    let etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    // Written before auth: a key outside Kaylee's prefixes.
    let mut c = Client::connect([&endpoint], None).await.expect("connect");
    c.put("/other/secret", "x", None).await.expect("put");
    least_privilege(&endpoint).await;

    let user = ["--etcd-user", "kaylee:kpw"];
    let server = Server::start(&endpoint, "s1", &user);
    server.wait_log("leading", WAIT);
    cli_ok(
        &endpoint,
        &[
            "--etcd-user",
            "kaylee:kpw",
            "run",
            "deploy/examples/api.yaml",
        ],
    );
    let root = ConnectOptions::new().with_user("root", "rootpw");
    let view = FleetView::connect_with(&endpoint, Api::V3, Some(root.clone())).await;
    view.wait_for("2 api jobs", WAIT, |s| s.jobs_of("api").len() == 2)
        .await;
    let ls = cli_ok(&endpoint, &["--etcd-user", "kaylee:kpw", "ls"]);
    assert!(ls.contains("api"), "{ls}");

    fails_with(
        &endpoint,
        &["--etcd-user", "kaylee:wrong", "ls"],
        &["etcd refused the credentials", "--etcd-user"],
    );
    fails_with(
        &endpoint,
        &["--etcd-user", "nobody", "ls"],
        &["--etcd-user must be user:password"],
    );
    fails_with(&endpoint, &["ls"], &["etcd refused", "--etcd-user"]);
    // The role really is narrow: the same user cannot read elsewhere.
    let mut k = Client::connect(
        [&endpoint],
        Some(ConnectOptions::new().with_user("kaylee", "kpw")),
    )
    .await
    .expect("connect as kaylee");
    assert!(k.get("/other/secret", None).await.is_err());
}
