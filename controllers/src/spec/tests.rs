use super::*;

const COUNTLY: &str = include_str!("../../../deploy/examples/countly.yaml");
const COUNTLY_JSON: &str = include_str!("../../../deploy/examples/countly.json");
const API: &str = include_str!("../../../deploy/examples/api.yaml");

fn yaml(text: &str) -> Result<Unit, SpecErrors> {
    from_yaml(text, "u.yaml")
}

/// A minimal valid unit with `spec_extra` appended under `spec:`.
fn with(spec_extra: &str) -> Result<Unit, SpecErrors> {
    yaml(&format!("name: web\nspec:\n  image: nginx:1\n{spec_extra}"))
}

fn err_text(r: Result<Unit, SpecErrors>) -> String {
    match r {
        Ok(u) => panic!("expected an error, got {u:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_duration_error_adds_only_what_helps() {
    let soon = err_text(with("  progressDeadline: soon\n"));
    assert!(soon.trim_end().ends_with("got `soon`"), "{soon}");
    let unit = err_text(with("  progressDeadline: 5x\n"));
    assert!(
        unit.trim_end()
            .ends_with("got `5x` (unknown unit `x`; units: s, m, h, d, ms)"),
        "{unit}"
    );
}

#[test]
fn yaml_and_json_forms_give_one_model() {
    let a = yaml(COUNTLY).unwrap();
    let b = from_json(COUNTLY_JSON, "/kaylee/units/countly").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.spec.replicas, Some(4));
    assert_eq!(a.spec.max_replicas_per_host, Some(2));
    assert_eq!(a.spec.machine, vec!["ssd=false"]);
    assert_eq!(a.spec.env[0].name, "MONGO_URL");
}

#[test]
fn canonical_json_parses_back_to_the_same_unit() {
    for text in [COUNTLY, API] {
        let u = yaml(text).unwrap();
        assert_eq!(from_json(&u.to_json(), "k").unwrap(), u);
    }
    assert_eq!(
        yaml(COUNTLY).unwrap().to_json(),
        COUNTLY_JSON.trim(),
        "the stored form is exactly the YAML parsed"
    );
}

#[test]
fn every_field_of_the_api_example_is_read() {
    let u = yaml(API).unwrap();
    let s = &u.spec;
    assert_eq!(u.name, "api");
    assert_eq!(s.replicas, Some(2));
    assert_eq!(s.max_replicas_per_host, Some(1));
    assert_eq!(s.image, "mongo:3.2");
    assert_eq!(s.cmd.as_deref(), Some("--quiet"));
    assert_eq!(s.env_files, vec!["/etc/environment"]);
    assert_eq!(
        s.env,
        vec![EnvVar {
            name: "SOME_VAR".into(),
            value: "some_value".into()
        }]
    );
    assert_eq!(
        s.volumes,
        vec![Volume {
            id: "vol-88bc607a".into(),
            driver: "blocker".into(),
            path: "/data".into(),
            options: "a=1".into()
        }]
    );
    assert_eq!(s.machine, vec!["ssd=true", "region=eu-west-1"]);
    assert_eq!(s.docker_args, vec!["--security-opt=label:disable"]);
    assert!(!s.global);
    assert_eq!(s.conflicts, vec!["mongo-1"]);
    assert_eq!(s.machine_id, None);
    assert_eq!(s.min_ready_seconds, None);
}

#[test]
fn defaults() {
    let u = with("").unwrap();
    assert_eq!(u.spec.replicas, None, "no replicas means singleton");
    assert_eq!(u.layout(), Layout::Singleton);
    assert_eq!(u.desired_replicas(), 1);
    let u = with("  volumes:\n  - id: v\n    path: /d\n  env:\n  - name: E\n").unwrap();
    assert_eq!(u.spec.volumes[0].driver, "local");
    assert_eq!(u.spec.volumes[0].options, "");
    assert_eq!(u.spec.env[0].value, "");
}

#[test]
fn layouts() {
    assert_eq!(
        with("  replicas: 3\n").unwrap().layout(),
        Layout::Replicated {
            replicas: 3,
            groups: None
        }
    );
    assert_eq!(
        with("  global: true\n  replicas: 3\n").unwrap().layout(),
        Layout::Global
    );
    assert_eq!(with("  machineId: abc\n").unwrap().layout(), Layout::Pinned);
    assert_eq!(with("  global: true\n").unwrap().desired_replicas(), 1);
}

#[test]
fn scalars_are_typed_like_yaml() {
    let u = with("  replicas: 2\n  startupDelay: 0\n  cmd: 1000\n  global: false\n").unwrap();
    assert_eq!(u.spec.replicas, Some(2));
    assert_eq!(u.spec.min_ready_seconds, Some(0));
    assert_eq!(u.spec.cmd.as_deref(), Some("1000"));
    assert!(err_text(with("  replicas: '2'\n")).contains("expected a whole number"));
    assert!(err_text(with("  replicas: 2.5\n")).contains("expected a whole number"));
    assert!(err_text(with("  global: yes\n")).contains("expected true or false"));
    assert!(err_text(with("  cmd: [a]\n")).contains("spec.cmd: expected a string, found a list"));
    assert!(err_text(with("  image: again\n")).contains("duplicate key `image`"));
}

#[test]
fn cmd_splits_like_a_shell() {
    let u = with("  cmd: sh -c \"echo 'a b' && sleep 1\"\n").unwrap();
    assert_eq!(u.cmd_args(), vec!["sh", "-c", "echo 'a b' && sleep 1"]);
    assert!(err_text(with("  cmd: \"sh -c 'unclosed\"\n")).contains("spec.cmd: cannot be split"));
}

/// Each row: a spec fragment, and what the one error must say.
#[test]
fn every_validation_error_names_the_field() {
    let rows: &[(&str, &str)] = &[
        (
            "  replicas: 0\n",
            "u.yaml:4:13: spec.replicas: must be between 1 and 1000, got 0",
        ),
        (
            "  replicas: -3\n",
            "spec.replicas: must be between 1 and 1000, got -3",
        ),
        (
            "  replicas: 1000000000\n",
            "spec.replicas: must be between 1 and 1000",
        ),
        (
            "  replicas: 2\n  maxReplicasPerHost: 0\n",
            "spec.maxReplicasPerHost: must be between",
        ),
        (
            "  maxReplicasPerHost: 2\n",
            "spec.maxReplicasPerHost: needs spec.replicas",
        ),
        (
            "  startupDelay: 99999\n",
            "spec.startupDelay: must be between 0 and 3600",
        ),
        (
            "  minReadySeconds: -1\n",
            "spec.minReadySeconds: must be between 0 and 3600",
        ),
        (
            "  minReadySeconds: 5\n  startupDelay: 5\n",
            "spec.startupDelay: is an older name of spec.minReadySeconds; give only one",
        ),
        (
            "  progressDeadline: 0\n",
            "spec.progressDeadline: must be between 1 and 86400 seconds, got 0",
        ),
        (
            "  progressDeadline: 2 days\n",
            "spec.progressDeadline: must be between 1 and 86400 seconds, got 172800",
        ),
        (
            "  progressDeadline: soon\n",
            "spec.progressDeadline: expected seconds or a duration like `5m`, got `soon`",
        ),
        (
            "  progressDeadline: 1.5s\n",
            "spec.progressDeadline: must be whole seconds",
        ),
        (
            "  onFailure: revert\n",
            "spec.onFailure: expected one of: pause, rollback, got `revert`",
        ),
        (
            "  updateOrder: stop_first\n",
            "spec.updateOrder: expected one of: start-first, stop-first, got `stop_first`",
        ),
        (
            "  replicas: 2\n  maxSurge: 0\n",
            "spec.maxSurge: must be between 1 and 1000, got 0",
        ),
        (
            "  replica: 2\n",
            "u.yaml:4:3: spec.replica: unknown field (did you mean `replicas`?)",
        ),
        (
            "  envFiles: [relative/path]\n",
            "spec.envFiles[0]: must be an absolute path",
        ),
        (
            "  envFiles: ['/a b']\n",
            "spec.envFiles[0]: must not contain whitespace",
        ),
        (
            "  env:\n  - name: 1BAD\n    value: x\n",
            "spec.env[0].name: `1BAD` is not a valid environment variable name",
        ),
        ("  env:\n  - value: x\n", "spec.env[0].name: is required"),
        (
            "  env:\n  - name: A\n    vaule: x\n",
            "spec.env[0].vaule: unknown field (did you mean `value`?)",
        ),
        (
            "  env:\n  - name: A\n  - name: A\n",
            "spec.env[1].name: duplicate variable `A`",
        ),
        (
            "  env: {name: A}\n",
            "spec.env: expected a list, found a mapping",
        ),
        (
            "  volumes:\n  - id: 'a b'\n    path: /d\n",
            "spec.volumes[0].id: `a b` is not a valid docker volume name",
        ),
        (
            "  volumes:\n  - id: v\n    path: d\n",
            "spec.volumes[0].path: must be an absolute path",
        ),
        (
            "  volumes:\n  - id: v\n    path: /d:ro\n",
            "spec.volumes[0].path: must not contain `:`",
        ),
        (
            "  volumes:\n  - id: v\n",
            "spec.volumes[0].path: is required",
        ),
        (
            "  volumes:\n  - id: v\n    path: /d\n    driver: 'x y'\n",
            "spec.volumes[0].driver: `x y` is not a valid volume driver",
        ),
        (
            "  volumes:\n  - id: v\n    path: /d\n  - id: v\n    path: /e\n",
            "spec.volumes[1].id: duplicate volume `v`",
        ),
        (
            "  machine: [ssd]\n",
            "spec.machine[0]: `ssd` must be `key=value`",
        ),
        (
            "  machine: ['ssd=true region=eu']\n",
            "spec.machine[0]: `ssd=true region=eu` must be `key=value`",
        ),
        (
            "  machineId: 'abc/def'\n",
            "spec.machineId: `abc/def` is not a fleet machine id",
        ),
        (
            "  global: true\n  machineId: abc\n",
            "spec.global: cannot be combined with spec.machineId",
        ),
        (
            "  pull: sometimes\n",
            "u.yaml:4:9: spec.pull: must be always, missing or never, got `sometimes`",
        ),
        (
            "  pull: IfNotPresent\n",
            "spec.pull: must be always, missing or never, got `IfNotPresent` (did you mean `missing`?)",
        ),
        (
            "  pullTimeout: 0\n",
            "spec.pullTimeout: must be between 1 and 86400 seconds, got 0",
        ),
        (
            "  pullTimeout: 2d\n",
            "spec.pullTimeout: must be between 1 and 86400 seconds, got 172800",
        ),
        (
            "  pullTimeout: 1500ms\n",
            "spec.pullTimeout: must be whole seconds",
        ),
        (
            "  pullTimeout: soon\n",
            "spec.pullTimeout: expected seconds or a duration like `5m`, got `soon`",
        ),
        (
            "  dockerArgs: ['-p 80:80', \"--label 'a b\"]\n",
            "u.yaml:4:28: spec.dockerArgs[1]: cannot be split into words: unbalanced quote",
        ),
        (
            "  dockerArgs: ['  ']\n",
            "spec.dockerArgs[0]: is no argument at all once split into words",
        ),
        (
            "  dockerArgs: ['--label', '#1']\n",
            "spec.dockerArgs[1]: has a `#` at the start of a word",
        ),
        (
            "  cmd: 'run # later'\n",
            "spec.cmd: has a `#` at the start of a word",
        ),
        (
            "  conflicts: ['k:db']\n",
            "spec.conflicts[0]: `k:db` must be a Kaylee unit name",
        ),
        (
            "  conflicts: ['a b.service']\n",
            "spec.conflicts[0]: `a b.service` must be a Kaylee unit name",
        ),
        (
            "  dockerArgs: x\n",
            "spec.dockerArgs: expected a list, found a scalar",
        ),
    ];
    for (fragment, expected) in rows {
        let text = err_text(with(fragment));
        assert!(
            text.contains(expected),
            "for {fragment:?}:\n  got:      {text}\n  expected: {expected}"
        );
        assert_eq!(
            text.lines().count(),
            1,
            "one error for {fragment:?}: {text}"
        );
    }
}

#[test]
fn image_and_name_rules() {
    assert!(
        err_text(yaml("name: web\nspec: {}\n")).contains("u.yaml:2:1: spec.image: is required")
    );
    assert!(
        err_text(with_image("-v/etc:/x"))
            .contains("spec.image: `-v/etc:/x` is not a docker image reference")
    );
    assert!(err_text(with_image("a b")).contains("is not a docker image reference"));
    assert!(with_image("registry.local:5000/team/app@sha256:abc").is_ok());
    for bad in [
        "a:b",
        "a/b",
        "..",
        ".x",
        "a b",
        "a\nb",
        "",
        "ü",
        &"x".repeat(64),
    ] {
        let text = err_text(from_json(
            &serde_json::json!({"name": bad, "spec": {"image": "x"}}).to_string(),
            "k",
        ));
        assert!(text.starts_with("k: name: "), "{bad:?}: {text}");
    }
    assert!(err_text(yaml("spec:\n  image: x\n")).contains("name: is required"));
}

fn with_image(image: &str) -> Result<Unit, SpecErrors> {
    from_json(
        &serde_json::json!({"name": "web", "spec": {"image": image}}).to_string(),
        "k",
    )
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = err_text(yaml(
        "name: 'bad name'\nspec:\n  replicas: 0\n  imagee: x\n  env:\n  - name: A\n    value: [1]\n",
    ));
    for expected in [
        "u.yaml:1:7: name:",
        "u.yaml:3:13: spec.replicas:",
        "u.yaml:4:3: spec.imagee: unknown field (did you mean `image`?)",
        "spec.image: is required",
        "u.yaml:7:5: spec.env[0].value: expected a string, found a list",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn root_level_errors() {
    assert!(err_text(yaml("- a\n- b\n")).contains("u.yaml:1:3: expected a mapping, found a list"));
    assert!(
        err_text(yaml("name: x\nspec: {image: y}\nextra: 1\n")).contains("extra: unknown field")
    );
    assert!(err_text(from_json("[1,2]", "k")).contains("k: expected a mapping, found a list"));
    assert!(err_text(from_json("{\"name\":", "k")).contains("invalid JSON"));
    assert!(err_text(from_json_bytes(b"\xff\xfe", "k")).contains("not UTF-8"));
}

#[test]
fn nul_is_refused_everywhere() {
    let doc = serde_json::json!({"name": "web", "spec": {"image": "x", "env": [{"name": "A", "value": "a\u{0}b"}]}});
    assert!(
        err_text(from_json(&doc.to_string(), "k"))
            .contains("spec.env[0].value: contains a NUL character")
    );
    let doc = serde_json::json!({"name": "web", "spec": {"image": "x", "dockerArgs": ["\u{0}"]}});
    assert!(
        err_text(from_json(&doc.to_string(), "k")).contains("spec.dockerArgs[0]: contains a NUL")
    );
}

#[test]
fn values_too_long_for_a_fleet_line_are_refused() {
    let long = "x".repeat(3000);
    let doc = serde_json::json!({"name": "web", "spec": {"image": "x", "env": [{"name": "A", "value": long}]}});
    let text = err_text(from_json(&doc.to_string(), "k"));
    assert!(
        text.contains("spec.env[0].value: is 3002 bytes once escaped"),
        "{text}"
    );
    let doc =
        serde_json::json!({"name": "web", "spec": {"image": "x", "cmd": format!("run {long}")}});
    assert!(err_text(from_json(&doc.to_string(), "k")).contains("spec.cmd: is 3000 bytes"));
}

#[test]
fn hostile_but_legal_values_are_kept_verbatim() {
    let value = "a\nb \"c\" $HOME %n \\ ; # é";
    let doc = serde_json::json!({"name": "web", "spec": {"image": "x", "env": [{"name": "A", "value": value}]}});
    let u = from_json(&doc.to_string(), "k").unwrap();
    assert_eq!(u.spec.env[0].value, value);
}

#[test]
fn volume_options_are_measured_with_their_flag() {
    let doc = |options: &str| {
        serde_json::json!({"name": "v", "spec": {"image": "busybox", "volumes": [
            {"id": "data", "path": "/data", "options": options}
        ]}})
        .to_string()
    };
    // Rendered as the single word `--opt=<options>`: 2040 bytes of options
    // fit a word alone but not with the flag, and would overflow the line.
    let err = from_json(&doc(&"o".repeat(2040)), "k").unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].field, "spec.volumes[0].options");
    assert!(err.0[0].message.contains("--opt="), "{err}");
    assert!(from_json(&doc(&"o".repeat(2036)), "k").is_ok());
}

#[test]
fn the_word_limit_is_one_number_in_the_message() {
    let doc = |len: usize| {
        serde_json::json!({"name": "w", "spec": {"image": "x", "dockerArgs": ["y".repeat(len)]}})
            .to_string()
    };
    assert!(from_json(&doc(crate::fleet::quote::MAX_WORD_BYTES), "k").is_ok());
    let text = err_text(from_json(
        &doc(crate::fleet::quote::MAX_WORD_BYTES + 1),
        "k",
    ));
    assert_eq!(
        text,
        "k: spec.dockerArgs[0]: is 2043 bytes once escaped for systemd; the limit is 2042 bytes, \
         so that every unit-file line stays within the 2046 bytes systemd and fleet read"
    );
}

#[test]
fn pull_policy_and_timeout() {
    let u = with("  pull: never\n  pullTimeout: 90s\n").unwrap();
    assert_eq!(u.spec.pull, Some(PullPolicy::Never));
    assert_eq!(u.pull_policy(), PullPolicy::Never);
    assert_eq!(u.pull_timeout_secs(), 90);
    assert!(
        u.to_json().contains(r#""pull":"never","pullTimeout":90"#),
        "{}",
        u.to_json()
    );
    assert_eq!(from_json(&u.to_json(), "k").unwrap(), u);
    let u = with("  pullTimeout: 600\n").unwrap();
    assert_eq!(u.pull_timeout_secs(), 600);
    assert_eq!(
        with("  pullTimeout: '1h'\n").unwrap().pull_timeout_secs(),
        3600
    );
    // Absent: the default by tag (nginx:1 is pinned), five minutes.
    let u = with("").unwrap();
    assert_eq!((u.spec.pull, u.pull_policy()), (None, PullPolicy::Missing));
    assert_eq!(u.pull_timeout_secs(), DEFAULT_PULL_TIMEOUT_SECS);
    assert!(!u.to_json().contains("pull"));
}

#[test]
fn docker_args_split_like_a_shell() {
    let split = |args: &str| {
        with(&format!("  dockerArgs: {args}\n"))
            .unwrap()
            .docker_args()
    };
    assert_eq!(split("['-p 8080:80']"), split("['-p', '8080:80']"));
    assert_eq!(split("['-p 8080:80']"), ["-p", "8080:80"]);
    assert_eq!(
        split("['--log-opt max-size=10m', '-v /tmp:/x']"),
        ["--log-opt", "max-size=10m", "-v", "/tmp:/x"]
    );
    assert_eq!(
        split(r#"["--label 'a b=c d'", "-e \"X=1 2\"", "''"]"#),
        ["--label", "a b=c d", "-e", "X=1 2", ""]
    );
    assert_eq!(split("['--label=#1', 'a#b']"), ["--label=#1", "a#b"]);
    // The stored form keeps the items as written.
    let u = with("  dockerArgs: ['-p 8080:80']\n").unwrap();
    assert_eq!(u.spec.docker_args, ["-p 8080:80"]);
}

#[test]
fn global_units_may_have_conflicts() {
    let u = with("  global: true\n  conflicts: [db]\n").unwrap();
    assert_eq!(u.layout(), Layout::Global);
    assert_eq!(u.spec.conflicts, ["db"]);
}

#[test]
fn a_file_with_a_byte_order_mark_reads_as_without() {
    let u = yaml(&format!("\u{feff}{COUNTLY}")).unwrap();
    assert_eq!(u, yaml(COUNTLY).unwrap());
}

#[test]
fn merge_keys_work_as_in_the_original() {
    let text = "\
common: &common
  image: nginx:1
  env:
  - name: A
    value: a
name: web
spec:
  <<: *common
  replicas: 2
";
    // `common` only defines the anchor the spec uses: not a field.
    let u = yaml(text).unwrap();
    assert_eq!(u.spec.image, "nginx:1");
    assert_eq!(u.spec.env[0].value, "a");
    assert_eq!(u.spec.replicas, Some(2));
    assert!(!u.to_json().contains("common"));
    // A top-level key no alias uses is still an unknown field.
    let err = err_text(yaml("commn: &c {image: x}\nname: web\nspec: {image: y}\n"));
    assert!(err.contains("u.yaml:1:1: commn: unknown field"), "{err}");

    let text = "\
name: web
spec:
  <<: {image: 'nginx:1', replicas: 3}
  replicas: 2
";
    let u = yaml(text).unwrap();
    assert_eq!(
        (u.spec.image.as_str(), u.spec.replicas),
        ("nginx:1", Some(2))
    );

    // A list of mappings merges in order; errors inside merged values
    // point to where they were written.
    let text = "\
name: &n web
spec:
  <<: [{image: 'a:1', cmd: first}, {image: 'b:1', cmd: second, pull: soon}]
";
    let err = err_text(yaml(text));
    assert_eq!(
        err,
        "u.yaml:3:70: spec.pull: must be always, missing or never, got `soon`"
    );
    let text =
        "name: web\nspec:\n  <<: [{image: 'a:1', cmd: first}, {image: 'b:1', cmd: second}]\n";
    let u = yaml(text).unwrap();
    assert_eq!(
        (u.spec.image.as_str(), u.spec.cmd.as_deref()),
        ("a:1", Some("first"))
    );
}

#[test]
fn rollout_fields_have_kubernetes_defaults_and_never_change_the_spec_hash() {
    use crate::fleet::naming::spec_hash;
    use std::time::Duration;
    let plain = with("  replicas: 3\n").unwrap();
    let p = plain.rollout(Duration::from_secs(120));
    assert_eq!(p.min_ready, Duration::ZERO);
    assert_eq!(p.progress_deadline, Duration::from_secs(120));
    assert_eq!(p.on_failure, OnFailure::Pause);
    assert_eq!(p.max_surge, 1);
    assert_eq!(p.order, UpdateOrder::StartFirst);

    let tuned = with(
        "  replicas: 3\n  minReadySeconds: 10\n  progressDeadline: 10m\n  onFailure: rollback\n  maxSurge: 2\n  updateOrder: stop-first\n",
    )
    .unwrap();
    let p = tuned.rollout(Duration::from_secs(120));
    assert_eq!(p.min_ready, Duration::from_secs(10));
    assert_eq!(p.progress_deadline, Duration::from_secs(600));
    assert_eq!(p.on_failure, OnFailure::Rollback);
    assert_eq!(p.max_surge, 2);
    assert_eq!(p.order, UpdateOrder::StopFirst);
    assert_eq!(
        spec_hash(&plain, "", "flanneld.service"),
        spec_hash(&tuned, "", "flanneld.service"),
        "how a rollout goes is not part of the unit text"
    );
    assert_eq!(
        with("  progressDeadline: 90\n")
            .unwrap()
            .spec
            .progress_deadline,
        Some(90)
    );
    assert_eq!(
        from_json(&tuned.to_json(), "k").unwrap(),
        tuned,
        "the canonical JSON keeps every rollout field"
    );
}

#[test]
fn startup_delay_is_read_as_min_ready_seconds() {
    let old = with("  replicas: 2\n  startupDelay: 7\n").unwrap();
    let new = with("  replicas: 2\n  minReadySeconds: 7\n").unwrap();
    assert_eq!(old, new);
    assert!(old.to_json().contains("\"minReadySeconds\":7"));
}
