//! Hostile input, table-driven: through `kaylee validate` / `kaylee run`
//! and as raw values in `/kaylee/units/`. Every row gets a clear error naming
//! the field (or, where the value is legal, is carried safely); nothing
//! half-written reaches etcd; the server keeps serving every other unit.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::etcd::{Etcd, EtcdOptions};
use support::fleet::FleetView;
use support::kaylee::{Server, cli};

/// A row: what it is, the document, and the error text expected (`None`:
/// the document is legal and must be accepted).
struct Row {
    label: &'static str,
    text: String,
    error: Option<&'static str>,
}

fn doc(name: &str, spec: Value) -> String {
    json!({"name": name, "spec": spec}).to_string()
}

fn with_spec(extra: Value) -> Value {
    let mut spec = json!({"image": "busybox:1", "replicas": 1});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    spec
}

/// Rows that are JSON documents: valid as YAML files and as etcd values.
fn json_rows(name: &str) -> Vec<Row> {
    let row = |label, text: String, error| Row { label, text, error };
    let env = |n: &str, v: &str| with_spec(json!({"env": [{"name": n, "value": v}]}));
    vec![
        row(
            "JSON array",
            "[1, 2]".into(),
            Some("expected a mapping, found a list"),
        ),
        row(
            "unknown field",
            doc(name, with_spec(json!({"replicaz": 2}))),
            Some("spec.replicaz: unknown field"),
        ),
        row(
            "name with :",
            doc("a:b", with_spec(json!({}))),
            Some("name: `a:b` is not a valid unit name"),
        ),
        row(
            "name with /",
            doc("a/b", with_spec(json!({}))),
            Some("name: `a/b` is not a valid unit name"),
        ),
        row(
            "name ..",
            doc("..", with_spec(json!({}))),
            Some("name: `..` is not a valid unit name"),
        ),
        row(
            "name with space",
            doc("a b", with_spec(json!({}))),
            Some("name: `a b` is not"),
        ),
        row(
            "name with newline",
            doc("a\nb", with_spec(json!({}))),
            Some("name: `a\\nb` is not"),
        ),
        row(
            "unicode name",
            doc("ünï", with_spec(json!({}))),
            Some("is not a valid unit name"),
        ),
        row(
            "empty name",
            doc("", with_spec(json!({}))),
            Some("name: must not be empty"),
        ),
        row(
            "env name with newline",
            doc(name, env("A\nB", "x")),
            Some("spec.env[0].name"),
        ),
        row(
            "env value with NUL",
            doc(name, env("A", "a\u{0}b")),
            Some("spec.env[0].value: contains a NUL"),
        ),
        row(
            "replicas 0",
            doc(name, with_spec(json!({"replicas": 0}))),
            Some("spec.replicas: must be between 1 and 1000, got 0"),
        ),
        row(
            "replicas negative",
            doc(name, with_spec(json!({"replicas": -5}))),
            Some("spec.replicas: must be between 1 and 1000, got -5"),
        ),
        row(
            "replicas 10^9",
            doc(name, with_spec(json!({"replicas": 1_000_000_000}))),
            Some("got 1000000000"),
        ),
        row(
            "volume id with spaces",
            doc(
                name,
                with_spec(json!({"volumes": [{"id": "my vol", "path": "/d"}]})),
            ),
            Some("spec.volumes[0].id: `my vol`"),
        ),
        row(
            "image as a flag",
            doc(name, with_spec(json!({"image": "--privileged"}))),
            Some("spec.image"),
        ),
        row(
            "legal env values are quoted, not refused",
            doc(name, env("A", "line1\nline2 50% $HOME \"q\" 'q' \\ ; #")),
            None,
        ),
        row(
            "legal docker args",
            doc(
                name,
                with_spec(json!({"dockerArgs": ["--label=a b", "%n$x"]})),
            ),
            None,
        ),
    ]
}

/// Rows only YAML can express.
fn yaml_rows() -> Vec<Row> {
    let row = |label, text: String, error| Row { label, text, error };
    let nest = |n: usize| format!("name: {}\n", "[".repeat(n) + &"]".repeat(n));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (c, prev) in ('b'..='j').zip('a'..) {
        bomb.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    vec![
        row(
            "invalid YAML",
            "name: [unclosed\n".into(),
            Some("invalid YAML"),
        ),
        row(
            "deep nesting",
            nest(100),
            Some("nesting deeper than 32 levels"),
        ),
        row(
            "very deep nesting",
            nest(100_000),
            Some("invalid YAML: recursion limit exceeded"),
        ),
        row("alias bomb", bomb, Some("more than 100000 values")),
        row(
            "YAML tag",
            "name: !!python/object x\n".into(),
            Some("YAML tag"),
        ),
        row(
            "two documents",
            "name: a\n---\nname: b\n".into(),
            Some("one YAML document"),
        ),
    ]
}

fn huge_row(name: &str) -> Row {
    Row {
        label: "10 MB document",
        text: doc(
            name,
            with_spec(json!({"cmd": "x".repeat(10 * 1024 * 1024)})),
        ),
        error: Some("the limit is 1048576 bytes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_row_gets_a_clear_error_and_nothing_is_written() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = json_rows("web");
    rows.extend(yaml_rows());
    rows.push(huge_row("web"));
    let mut rejected = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let path = dir.path().join(format!("row{i}.yaml"));
        std::fs::write(&path, &row.text).expect("write row");
        let path = path.display().to_string();
        let out = cli(&etcd.endpoint(), &["validate", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match row.error {
            Some(expected) => {
                assert_eq!(out.status.code(), Some(2), "{}: {stderr}", row.label);
                assert!(
                    stderr.contains(&path),
                    "{}: the error names the file: {stderr}",
                    row.label
                );
                assert!(
                    stderr.contains(expected),
                    "{}: expected {expected:?} in {stderr}",
                    row.label
                );
                rejected.push(path);
            }
            None => assert!(out.status.success(), "{}: {stderr}", row.label),
        }
    }
    // One bad file among good ones: `run` writes nothing at all.
    let mut args = vec!["run", "deploy/examples/countly.yaml"];
    args.extend(rejected.iter().map(String::as_str));
    let out = cli(&etcd.endpoint(), &args);
    assert_eq!(out.status.code(), Some(2));
    let view = FleetView::connect(&etcd.endpoint()).await;
    let mut kv = view.client().kv_client();
    let units = kv
        .get(
            "/kaylee/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list");
    assert!(units.kvs().is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_in_etcd_never_stop_the_server() {
    // Big enough for the 10 MB row: etcd refuses it by default, but an
    // operator may have raised the limit, and Kaylee must cope.
    let etcd = Etcd::start_with(EtcdOptions {
        extra_args: vec!["--max-request-bytes=12582912".into()],
        ..EtcdOptions::default()
    });
    let view = FleetView::connect(&etcd.endpoint()).await;
    let mut kv = view.client().kv_client();
    let mut rows: Vec<(String, Row)> = Vec::new();
    for (i, row) in json_rows("NAME").into_iter().enumerate() {
        let key = format!("h{i}");
        // Rows about the name keep their hostile name; the rest are named
        // like their key.
        let text = row
            .text
            .replacen("\"name\":\"NAME\"", &format!("\"name\":\"{key}\""), 1);
        rows.push((key, Row { text, ..row }));
    }
    rows.push(("huge".into(), huge_row("huge")));
    rows.push((
        "binary".into(),
        Row {
            label: "not UTF-8",
            text: String::new(),
            error: Some("not UTF-8"),
        },
    ));
    rows.push((
        "mismatch".into(),
        Row {
            label: "name differs from the key",
            text: doc("other", with_spec(json!({}))),
            error: Some("name: is `other` but the unit is stored under `mismatch`"),
        },
    ));
    for (key, row) in &rows {
        let value: Vec<u8> = if row.label == "not UTF-8" {
            vec![0xff, 0xfe, b'{']
        } else {
            row.text.clone().into_bytes()
        };
        kv.put(format!("/kaylee/units/{key}"), value, None)
            .await
            .expect("put");
    }
    let mut server = Server::start(&etcd.endpoint(), "s1", &[]);
    server.wait_log("leading", Duration::from_secs(20));
    support::kaylee::cli_ok(&etcd.endpoint(), &["run", "deploy/examples/countly.yaml"]);
    view.wait_for("countly is served", Duration::from_secs(30), |s| {
        s.jobs_of("countly").len() == 4
    })
    .await;

    for (key, row) in &rows {
        let status = wait_status(&view, key).await;
        match row.error {
            Some(expected) => {
                let error = status["error"].as_str().unwrap_or_default();
                assert!(error.contains(expected), "{}: {status}", row.label);
                assert!(
                    error.starts_with(&format!("/kaylee/units/{key}")),
                    "names the key: {error}"
                );
            }
            None => assert!(status["error"].is_null(), "{}: {status}", row.label),
        }
    }
    let snap = view.snapshot().await;
    for (key, row) in &rows {
        let jobs = snap.jobs_of(key).len();
        assert_eq!(
            jobs,
            usize::from(row.error.is_none()),
            "{}: jobs {jobs}",
            row.label
        );
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_exit(Duration::from_secs(20));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

async fn wait_status(view: &FleetView, key: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut kv = view.client().kv_client();
    loop {
        let resp = kv
            .get(format!("/kaylee/status/{key}"), None)
            .await
            .expect("get");
        if let Some(v) = resp
            .kvs()
            .first()
            .and_then(|k| serde_json::from_slice::<Value>(k.value()).ok())
            && (v["error"].is_string() || v["created"].as_u64() > Some(0))
        {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "no status for {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
