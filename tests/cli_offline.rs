//! The offline commands, run as an operator would run them.

use serde_json::Value;
use std::process::{Command, Output};

fn kaylee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaylee"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kaylee runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_says_ok_per_file() {
    let out = kaylee(&[
        "validate",
        "deploy/examples/countly.yaml",
        "deploy/examples/api.yaml",
        "deploy/examples/countly.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "deploy/examples/countly.yaml: ok\ndeploy/examples/api.yaml: ok\ndeploy/examples/countly.json: ok\n"
    );
}

#[test]
fn validate_exits_2_naming_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "name: web\nspec:\n  image: nginx\n  replicaz: 2\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: 'a b'\nspec:\n  replicas: 0\n").unwrap();
    let out = kaylee(&[
        "validate",
        typo.to_str().unwrap(),
        bad.to_str().unwrap(),
        "deploy/examples/countly.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let t = typo.display();
    assert!(
        err.contains(&format!(
            "{t}:4:3: spec.replicaz: unknown field (did you mean `replicas`?)"
        )),
        "{err}"
    );
    let b = bad.display();
    for expected in [
        format!("{b}:1:7: name:"),
        format!("{b}:3:13: spec.replicas: must be between 1 and 1000, got 0"),
        format!("{b}:2:1: spec.image: is required"),
    ] {
        assert!(err.contains(&expected), "missing {expected}\n{err}");
    }
    assert_eq!(text(&out.stdout), "deploy/examples/countly.yaml: ok\n");
}

#[test]
fn validate_reports_unreadable_files() {
    let out = kaylee(&["validate", "/nonexistent/unit.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/unit.yaml: "));
}

#[test]
fn render_prints_names_and_unit_files() {
    let out = kaylee(&["render", "deploy/examples/countly.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let names: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| n.starts_with("# k:countly:")));
    assert_eq!(
        stdout
            .matches("[X-Fleet]\nMachineMetadata=ssd=false\n")
            .count(),
        4
    );
}

#[test]
fn render_json_has_the_documented_shape() {
    let out = kaylee(&[
        "render",
        "deploy/examples/countly.yaml",
        "--unit-prefix",
        "kay",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let units = v.as_array().unwrap();
    assert_eq!(units.len(), 4);
    for u in units {
        let name = u["name"].as_str().unwrap();
        let unit = u["unit"].as_str().unwrap();
        let hash = u["hash"].as_str().unwrap();
        assert!(name.starts_with("kay:countly:") && name.ends_with(".service"));
        assert_eq!(hash.len(), 40);
        let records = u["records"].as_array().unwrap();
        let keys: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                format!("unit/{hash}"),
                format!("job/{name}/object"),
                format!("job/{name}/target-state")
            ]
        );
        let raw: Value = serde_json::from_str(records[0]["value"].as_str().unwrap()).unwrap();
        assert_eq!(raw["Raw"], unit);
        assert_eq!(records[2]["value"], "launched");
    }
}

#[test]
fn render_refuses_bad_files_and_prefixes_with_exit_2() {
    let out = kaylee(&[
        "render",
        "deploy/examples/countly.yaml",
        "--unit-prefix",
        "a:b",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unit prefix"));
}

#[test]
fn every_command_has_help_and_there_is_a_version() {
    for cmd in [
        &["--help"][..],
        &["validate", "--help"],
        &["render", "--help"],
    ] {
        let out = kaylee(cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{cmd:?}");
    }
    let out = kaylee(&["--version"]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("kaylee {}", env!("CARGO_PKG_VERSION"))
    );
}
