//! fleet's own records (docs/fleet-registry.md, "The golden records")
//! reproduced byte for byte, and the example units rendered as docs/design.md §4 says.

mod support;

use kaylee_controllers::fleet::records::{
    create_records, go_json_string, job_object_value, unit_hash, unit_key, unit_value,
};
use kaylee_controllers::fleet::unitfile::serialize;
use kaylee_controllers::fleet::{RenderOptions, render};
use kaylee_controllers::spec;
use serde_json::Value;
use support::unitfile::deserialize;

const GOLDEN: &str = include_str!("../../tests/fixtures/fleet-golden.json");
const FLEET_PREFIX: &str = "/_coreos.com/fleet/";

fn golden() -> Vec<(String, Value)> {
    let v: Value = serde_json::from_str(GOLDEN).expect("golden file is JSON");
    v.as_object()
        .expect("golden file is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn field<'a>(g: &'a Value, key: &str) -> &'a str {
    g[key]
        .as_str()
        .unwrap_or_else(|| panic!("golden field {key}"))
}

#[test]
fn golden_records_are_reproduced_byte_for_byte() {
    let records = golden();
    assert_eq!(records.len(), 3);
    for (name, g) in records {
        let stored: Value = serde_json::from_str(field(&g, "unit_value")).unwrap();
        let raw = stored["Raw"].as_str().unwrap();

        // fleet parses the text with go-systemd and stores the serializer's
        // output: the round trip must be the identity on these bytes.
        let options = deserialize(raw).unwrap();
        assert_eq!(serialize(&options), raw, "{name}: serializer");

        let hash = unit_hash(raw);
        assert_eq!(
            format!("{FLEET_PREFIX}{}", unit_key(&hash)),
            field(&g, "unit_key"),
            "{name}: sha1"
        );
        assert_eq!(
            unit_value(raw),
            field(&g, "unit_value"),
            "{name}: unit JSON"
        );
        assert_eq!(
            job_object_value(&name, &hash),
            field(&g, "job_object_value"),
            "{name}: job JSON"
        );

        let [unit, object, target] = create_records(&name, raw);
        assert_eq!(format!("{FLEET_PREFIX}{}", unit.key), field(&g, "unit_key"));
        assert_eq!(unit.value, field(&g, "unit_value"));
        assert_eq!(
            format!("{FLEET_PREFIX}{}", object.key),
            field(&g, "job_object_key")
        );
        assert_eq!(object.value, field(&g, "job_object_value"));
        assert_eq!(target.key, format!("job/{name}/target-state"));
        // fleetctl submit writes `inactive`; Kaylee starts its units.
        assert_eq!(field(&g, "target_state_after_submit"), "inactive");
        assert_eq!(target.value, "launched");
    }
}

/// The continuation of golden record `k:api:…`, in small: fleet keeps the
/// backslash, the newline and the next line's indent in the value.
#[test]
fn a_continuation_is_kept_verbatim() {
    let text = "[Service]\nExecStart=/a \\\n  b\nRestart=always\n";
    let opts = deserialize(text).expect("reads");
    assert_eq!(opts[0].value, "/a \\\n  b");
    assert_eq!(opts[1].name, "Restart");
}

#[test]
fn golden_quoting_matches_kaylee_quoting() {
    use kaylee_controllers::fleet::quote::exec_word;
    let (_, demo) = &golden()[0];
    let raw: Value = serde_json::from_str(field(demo, "unit_value")).unwrap();
    let text = raw["Raw"].as_str().unwrap();
    assert!(text.contains(&format!(" -e {} ", exec_word("A=b c"))));
    let (_, api) = &golden()[1];
    let raw: Value = serde_json::from_str(field(api, "unit_value")).unwrap();
    let text = raw["Raw"].as_str().unwrap();
    assert!(text.contains(&format!(" -e {} ", exec_word("X=50% off $HOME"))));
    assert_eq!(go_json_string("&<>é"), "\"\\u0026\\u003c\\u003eé\"");
}

fn example(name: &str) -> spec::Unit {
    let path = format!("{}/../deploy/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    spec::from_yaml(&text, &path).unwrap()
}

fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn countly_renders_four_units_in_two_conflict_groups() {
    let r = render(&example("countly.yaml"), "", &RenderOptions::default());
    assert_eq!(r.units.len(), 4);
    let groups: std::collections::BTreeSet<_> =
        r.units.iter().map(|u| u.name.group.clone()).collect();
    assert_eq!(groups.len(), 2);
    for (i, u) in r.units.iter().enumerate() {
        let name = u.name.to_name();
        assert_eq!(
            name,
            format!(
                "k:countly:{}:{}:{}.service",
                r.spec_hash,
                u.name.group,
                i + 1
            )
        );
        assert_eq!(
            u.name.group,
            r.units[i % 2].name.group,
            "replica i is in group i mod 2"
        );
        assert_eq!(
            lines_with(&u.text, "MachineMetadata="),
            ["MachineMetadata=ssd=false"]
        );
        // Groups are the unit's, shared by every spec: any spec hash.
        let conflicts = format!("Conflicts=k:countly:*:{}:*.service", u.name.group);
        assert_eq!(lines_with(&u.text, "Conflicts="), [conflicts.as_str()]);
        let container = format!("k_countly_{}_{}_{}", r.spec_hash, u.name.group, i + 1);
        let exec = format!(
            "ExecStart=/usr/bin/docker run --rm --name {container} -l kaylee.name=countly \
             -e \"MONGO_URL=mongodb://mongo-1.k.lan,mongo-2.k.lan,mongo-3.k.lan/countly?replicaSet=main\" \
             monder/countly-docker:latest"
        );
        assert_eq!(lines_with(&u.text, "ExecStart="), [exec.as_str()]);
        assert_eq!(u.hash, unit_hash(&u.text));
    }
}

#[test]
fn countly_replica_one_is_exactly_this_unit_file() {
    let r = render(&example("countly.yaml"), "", &RenderOptions::default());
    let u = &r.units[0];
    let c = format!("k_countly_{}_{}_1", r.spec_hash, u.name.group);
    let expected = format!(
        "[Unit]\n\
         Description=Kaylee unit countly (replica 1)\n\
         Requires=flanneld.service\n\
         After=flanneld.service\n\
         \n\
         [Service]\n\
         TimeoutStartSec=420\n\
         ExecStartPre=/usr/bin/timeout -k 10 300 /usr/bin/docker pull monder/countly-docker:latest\n\
         ExecStartPre=-/usr/bin/docker kill {c}\n\
         ExecStartPre=-/usr/bin/docker rm {c}\n\
         ExecStart=/usr/bin/docker run --rm --name {c} -l kaylee.name=countly -e \"MONGO_URL=mongodb://mongo-1.k.lan,mongo-2.k.lan,mongo-3.k.lan/countly?replicaSet=main\" monder/countly-docker:latest\n\
         ExecStop=-/usr/bin/docker stop {c}\n\
         SuccessExitStatus=137 143\n\
         Restart=always\n\
         RestartSec=30\n\
         \n\
         [X-Fleet]\n\
         MachineMetadata=ssd=false\n\
         Conflicts=k:countly:*:{}:*.service\n",
        u.name.group
    );
    assert_eq!(u.text, expected);
    // Pinned, so that a change of hashing shows here: the unit's groups
    // come from its name and index alone, never from a spec.
    assert_eq!(
        [
            r.units[0].name.group.as_str(),
            r.units[1].name.group.as_str()
        ],
        ["523d18", "58f2e6"]
    );
    let other = render(
        &example("countly.yaml"),
        "restarted",
        &RenderOptions::default(),
    );
    assert_ne!(other.spec_hash, r.spec_hash);
    assert_eq!(other.units[0].name.group, r.units[0].name.group);
}

#[test]
fn api_example_carries_every_option_in_design_order() {
    let r = render(&example("api.yaml"), "", &RenderOptions::default());
    assert_eq!(r.units.len(), 2);
    assert_eq!(
        r.units[0].name.group, r.units[1].name.group,
        "maxReplicasPerHost 1: one group"
    );
    let u = &r.units[0];
    let c = format!("k_api_{}_{}_1", r.spec_hash, u.name.group);
    let keys: Vec<&str> = u
        .text
        .lines()
        .map(|l| l.split('=').next().unwrap_or(l))
        .collect();
    assert_eq!(
        keys,
        [
            "[Unit]",
            "Description",
            "Requires",
            "After",
            "",
            "[Service]",
            "EnvironmentFile",
            "TimeoutStartSec",
            "ExecStartPre",
            "ExecStartPre",
            "ExecStartPre",
            "ExecStartPre",
            "ExecStart",
            "ExecStop",
            "SuccessExitStatus",
            "Restart",
            "RestartSec",
            "",
            "[X-Fleet]",
            "MachineMetadata",
            "MachineMetadata",
            "Conflicts",
            "Conflicts"
        ]
    );
    assert!(u.text.contains(
        "ExecStartPre=/usr/bin/docker volume create --name=vol-88bc607a --driver=blocker --opt=a=1\n"
    ));
    // mongo:3.2 is a pinned tag: pulled only when the host lacks it.
    assert!(u.text.contains(
        "ExecStartPre=/bin/sh -c \"/usr/bin/docker inspect --type=image \\\"$$1\\\" >/dev/null 2>&1 || \
         exec /usr/bin/timeout -k 10 300 /usr/bin/docker pull \\\"$$1\\\"\" kaylee-pull mongo:3.2\n"
    ));
    assert!(u.text.contains(&format!(
        "ExecStart=/usr/bin/docker run --rm --name {c} -l kaylee.name=api -e SOME_VAR=some_value \
         -v vol-88bc607a:/data --security-opt=label:disable mongo:3.2 --quiet\n"
    )));
    assert!(u.text.ends_with(&format!(
        "Conflicts=k:api:*:{}:*.service\nConflicts=k:mongo-1:*.service\n",
        u.name.group
    )));
}

#[test]
fn pinned_and_global_examples() {
    let r = render(&example("pinned.yaml"), "", &RenderOptions::default());
    assert_eq!(r.units.len(), 1);
    let t = &r.units[0].text;
    assert!(t.contains("\nMachineID=b15ba3a1f0e54c4b9a0c3e1d2f3a4b5c\n"));
    assert!(
        t.ends_with("Conflicts=k:mongo-1:*.service\n"),
        "pinned units never overlap: {t}"
    );
    assert!(
        t.contains("--name=mongo-1-data --driver=local\n"),
        "no --opt when options is empty"
    );

    let r = render(&example("global-agent.yaml"), "", &RenderOptions::default());
    assert_eq!(r.units.len(), 1);
    let t = &r.units[0].text;
    assert!(
        t.ends_with("[X-Fleet]\nMachineMetadata=role=worker\nGlobal=true\n"),
        "{t}"
    );
    assert!(t.contains(" busybox:latest sleep 1000000\n"));
}

/// fleet v1.0.0 accepts `Conflicts=` on global units (the original Kaylee
/// passed them through): they are rendered after `Global=true`.
#[test]
fn global_units_carry_their_conflicts() {
    let mut unit = example("global-agent.yaml");
    unit.spec.conflicts = vec!["db".into(), "etcd*.service".into()];
    let t = &render(&unit, "", &RenderOptions::default()).units[0].text;
    assert!(
        t.ends_with("Global=true\nConflicts=k:db:*.service\nConflicts=etcd*.service\n"),
        "{t}"
    );
}

fn unit_yaml(extra: &str) -> spec::Unit {
    let text = format!("name: web\nspec:\n  image: nginx:1\n{extra}");
    spec::from_yaml(&text, "web.yaml").unwrap()
}

fn exec_lines(text: &str, key: &str) -> Vec<String> {
    lines_with(text, &format!("{key}="))
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_pull_policy_renders_its_own_start() {
    let render1 = |extra: &str| {
        render(&unit_yaml(extra), "", &RenderOptions::default()).units[0]
            .text
            .clone()
    };
    let always = render1("  pull: always\n  pullTimeout: 90\n");
    assert_eq!(
        exec_lines(&always, "TimeoutStartSec"),
        ["TimeoutStartSec=210"]
    );
    assert!(
        always.contains("\nExecStartPre=/usr/bin/timeout -k 10 90 /usr/bin/docker pull nginx:1\n")
    );
    let never = render1("  pull: never\n");
    assert!(never.contains(
        "\nExecStartPre=/usr/bin/docker inspect --type=image \"--format={{.Id}}\" nginx:1\n"
    ));
    assert!(!never.contains(" pull "), "{never}");
    let missing = render1("");
    assert!(missing.contains("kaylee-pull nginx:1\n"), "{missing}");
    assert_eq!(
        exec_lines(&missing, "TimeoutStartSec"),
        ["TimeoutStartSec=420"]
    );
}

/// The inputs: references for systemd to expand, and docker args
/// given as one item per flag and value.
#[test]
fn references_and_split_docker_args_render_as_systemd_expects() {
    let u = unit_yaml(
        "  envFiles: [/etc/environment]\n\
         \x20 env:\n\
         \x20 - name: IP\n\
         \x20   value: '${COREOS_PRIVATE_IPV4}'\n\
         \x20 - name: LITERAL\n\
         \x20   value: '$${HOME} costs $5'\n\
         \x20 dockerArgs: ['-p ${COREOS_PRIVATE_IPV4}:80:80', '--log-opt max-size=10m', '-v /tmp:/x']\n",
    );
    let r = render(&u, "", &RenderOptions::default());
    let t = &r.units[0].text;
    let c = format!("k_web_{}_{}_1", r.spec_hash, r.units[0].name.group);
    assert_eq!(
        exec_lines(t, "ExecStart"),
        [format!(
            "ExecStart=/usr/bin/docker run --rm --name {c} -l kaylee.name=web \
             -e \"IP=${{COREOS_PRIVATE_IPV4}}\" -e \"LITERAL=$${{HOME}} costs $$5\" \
             -p \"${{COREOS_PRIVATE_IPV4}}:80:80\" --log-opt max-size=10m -v /tmp:/x nginx:1"
        )]
    );
    assert_eq!(
        kaylee_controllers::fleet::docker_run_argv(&u, &r.units[0].name)[7..],
        [
            "-e",
            "IP=${COREOS_PRIVATE_IPV4}",
            "-e",
            "LITERAL=${HOME} costs $5",
            "-p",
            "${COREOS_PRIVATE_IPV4}:80:80",
            "--log-opt",
            "max-size=10m",
            "-v",
            "/tmp:/x",
            "nginx:1"
        ]
    );
}

#[test]
fn network_unit_and_prefix_are_configurable() {
    let opts = RenderOptions {
        unit_prefix: "kay".into(),
        network_unit: String::new(),
    };
    let r = render(&example("countly.yaml"), "", &opts);
    let t = &r.units[0].text;
    assert!(!t.contains("Requires=") && !t.contains("After="));
    assert!(r.units[0].name.to_name().starts_with("kay:countly:"));
    assert!(t.contains("--name kay_countly_"));
    let bad = RenderOptions {
        unit_prefix: "a:b".into(),
        ..opts
    };
    assert!(bad.validate().is_err());
}

#[test]
fn spec_hash_ignores_replicas_but_not_the_rest() {
    let base = example("countly.yaml");
    let h = |u: &spec::Unit, marker: &str| render(u, marker, &RenderOptions::default()).spec_hash;
    let mut scaled = base.clone();
    scaled.spec.replicas = Some(7);
    assert_eq!(h(&base, ""), h(&scaled, ""), "scaling keeps the template");
    let mut singleton = base.clone();
    singleton.spec.replicas = None;
    singleton.spec.max_replicas_per_host = None;
    assert_ne!(h(&base, ""), h(&singleton, ""));
    let mut image = base.clone();
    image.spec.image = "monder/countly-docker:2".into();
    assert_ne!(h(&base, ""), h(&image, ""));
    assert_ne!(
        h(&base, ""),
        h(&base, "2026-11-26T10:00:00Z"),
        "restart changes the template"
    );
}
