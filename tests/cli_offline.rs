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
        "--offline",
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
fn run_prints_every_error_as_validate_does_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: web\nspec:\n  image: nginx\n  replicaz: 2\n  bogus: 1\n",
    )
    .unwrap();
    // Nothing listens there: a run that got past its checks would fail
    // with exit 1 on the connection, not 2.
    let out = Command::new(env!("CARGO_BIN_EXE_kaylee"))
        .args(["run", bad.to_str().unwrap(), "deploy/examples/countly.yaml"])
        .env("ETCDCTL_ENDPOINTS", "http://127.0.0.1:9")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kaylee runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let (b, err) = (bad.display().to_string(), text(&out.stderr));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "two errors and kaylee's line: {err}");
    assert_eq!(
        lines[0],
        format!("{b}:4:3: spec.replicaz: unknown field (did you mean `replicas`?)")
    );
    assert!(
        lines[1].starts_with(&format!("{b}:5:3: spec.bogus: unknown field")),
        "{err}"
    );
    assert_eq!(
        lines[2], "kaylee: 1 of 2 file(s) invalid; nothing was written",
        "{err}"
    );
}

#[test]
fn validate_reports_unreadable_files() {
    let out = kaylee(&["validate", "/nonexistent/unit.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/unit.yaml: "));
}

#[test]
fn render_prints_names_and_unit_files() {
    let out = kaylee(&["render", "--offline", "deploy/examples/countly.yaml"]);
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
        "--offline",
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
        let argv: Vec<&str> = (u["argv"].as_array().unwrap().iter())
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(&argv[..2], ["/usr/bin/docker", "run"]);
        assert_eq!(argv.last(), Some(&"monder/countly-docker:latest"));
    }
    assert!(
        text(&out.stderr).contains(
            "kaylee: rendering with the flags (--offline): unit prefix `kay`, network unit `flanneld.service`"
        ),
        "{}",
        text(&out.stderr)
    );
}

/// Writes `name` with `content` into `dir`, returning its path.
fn file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

/// The inputs, as units written for the original Kaylee have them.
#[test]
fn units_written_for_the_original_validate() {
    let dir = tempfile::tempdir().unwrap();
    let bom = file(
        &dir,
        "bom.yaml",
        "\u{feff}name: web\nspec:\n  image: nginx:1\n",
    );
    let merged = file(
        &dir,
        "merged.yaml",
        "common: &common\n  image: nginx:1\n  replicas: 2\nname: web\nspec:\n  <<: *common\n  replicas: 3\n",
    );
    let inline = file(
        &dir,
        "inline.yaml",
        "name: web\nspec:\n  <<: {image: 'nginx:1'}\n",
    );
    let global = file(
        &dir,
        "global.yaml",
        "name: agent\nspec:\n  image: busybox:1\n  global: true\n  conflicts: [db]\n",
    );
    let coreos = file(
        &dir,
        "coreos.yaml",
        "name: web\nspec:\n  image: nginx:1\n  envFiles: [/etc/environment]\n  env:\n  - name: IP\n    value: \"${COREOS_PRIVATE_IPV4}\"\n  dockerArgs: [\"-p ${COREOS_PRIVATE_IPV4}:80:80\", \"--log-opt max-size=10m\", \"-v /tmp:/x\"]\n",
    );
    let out = kaylee(&[
        "validate",
        "--offline",
        &bom,
        &merged,
        &inline,
        &global,
        &coreos,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(": ok\n").count(), 5);
    assert_eq!(text(&out.stderr), "", "no warnings");
}

#[test]
fn a_reference_without_env_files_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(
        &dir,
        "web.yaml",
        "name: web\nspec:\n  image: nginx:1\n  env:\n  - name: IP\n    value: \"${COREOS_PRIVATE_IPV4}\"\n",
    );
    let out = kaylee(&["validate", "--offline", &f]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("{f}: ok\n"));
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: {f}: spec.env[0].value: ${{COREOS_PRIVATE_IPV4}} is filled in by systemd from \
             the unit's environment, but spec.envFiles is empty, so it becomes empty text \
             (write $${{COREOS_PRIVATE_IPV4}} for the text itself)\n"
        )
    );
}

#[test]
fn docker_args_are_split_into_words_or_refused_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let ok = file(
        &dir,
        "ok.yaml",
        "name: web\nspec:\n  image: nginx:1\n  dockerArgs: ['-p 8080:80', \"--label 'a b=c'\"]\n",
    );
    let out = kaylee(&["render", "--offline", &ok]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(" -p 8080:80 --label \"a b=c\" nginx:1\n"),
        "{}",
        text(&out.stdout)
    );
    let bad = file(
        &dir,
        "bad.yaml",
        "name: web\nspec:\n  image: nginx:1\n  dockerArgs: ['-p 80:80', \"--label 'a b\"]\n",
    );
    let out = kaylee(&["validate", "--offline", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!(
            "{bad}:4:28: spec.dockerArgs[1]: cannot be split into words: unbalanced quote"
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_word_limit_is_the_one_the_readme_gives() {
    let dir = tempfile::tempdir().unwrap();
    let unit = |len: usize| {
        format!(
            "name: web\nspec:\n  image: nginx:1\n  dockerArgs: ['{}']\n",
            "y".repeat(len)
        )
    };
    let ok = file(&dir, "ok.yaml", &unit(2042));
    let out = kaylee(&["validate", "--offline", &ok]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let long = file(&dir, "long.yaml", &unit(2043));
    let out = kaylee(&["validate", "--offline", &long]);
    assert_eq!(out.status.code(), Some(2));
    let message = "spec.dockerArgs[0]: is 2043 bytes once escaped for systemd; the limit is 2042 \
                   bytes, so that every unit-file line stays within the 2046 bytes systemd and \
                   fleet read";
    assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
}

#[test]
fn render_refuses_bad_files_and_prefixes_with_exit_2() {
    let out = kaylee(&[
        "render",
        "--offline",
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
