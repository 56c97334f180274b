//! Rendered commands run against the real local Docker engine, as systemd
//! would run them: the unit text is read back with the independent systemd
//! reader (`controllers/tests/support/systemd.rs`), `${NAME}` references
//! are filled in from a stand-in for the unit's `EnvironmentFile=`, and each
//! `ExecStartPre=`, `ExecStart=` and `ExecStop=` argv is executed directly
//! (no shell), in order. No registry is reachable: images are the local
//! test image or ones that do not exist. Every container is removed by id.

mod support;

#[path = "../controllers/tests/support/systemd.rs"]
#[allow(dead_code)]
mod systemd;

use kaylee_controllers::fleet::{RenderOptions, render};
use kaylee_controllers::spec;
use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::docker::{Container, TEST_LABEL, docker, test_image};
use support::{output_with_timeout, wait_timeout};

/// The variables a host's `EnvironmentFile=` would give the unit.
fn host_env() -> HashMap<&'static str, &'static str> {
    HashMap::from([("HOST_IP", "192.0.2.7")])
}

/// A unit's single fleet unit, read back as systemd reads it.
fn rendered(yaml: &str) -> systemd::UnitFile {
    let unit = spec::from_yaml(yaml, "test.yaml").expect("a valid unit");
    let options = RenderOptions {
        network_unit: String::new(),
        ..RenderOptions::default()
    };
    let r = render(&unit, "", &options);
    let parsed = systemd::parse(&r.units[0].text);
    assert!(
        parsed.problems.is_empty(),
        "{:?}\n{}",
        parsed.problems,
        r.units[0].text
    );
    parsed
}

/// The argv of an `Exec*=` option with each reference filled in, as
/// systemd does when it runs the command; and whether failure is ignored.
fn argv(opt: &systemd::Opt) -> (Vec<String>, bool) {
    assert_eq!(opt.commands.len(), 1, "{}", opt.value);
    let cmd = &opt.commands[0];
    let env = host_env();
    let words = cmd
        .argv
        .iter()
        .map(|w| {
            let mut w = w.clone();
            for (name, value) in &env {
                w = w.replace(&systemd::reference(name), value);
            }
            assert!(!w.contains('\0'), "a reference to an unset variable: {w:?}");
            w
        })
        .collect();
    (words, cmd.prefixes.contains('-'))
}

fn run(words: &[String], limit: Duration) -> Output {
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    output_with_timeout(&mut cmd, limit).unwrap_or_else(|| panic!("{words:?} did not finish"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs every `ExecStartPre=` in order; returns the output of the first
/// that failed without a `-` prefix, if any.
fn start_pre(unit: &systemd::UnitFile, limit: Duration) -> Option<(Vec<String>, Output)> {
    for opt in unit.get("Service", "ExecStartPre") {
        let (words, may_fail) = argv(opt);
        let out = run(&words, limit);
        if !out.status.success() && !may_fail {
            return Some((words, out));
        }
    }
    None
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The pull policy `missing` with the image on the host: the start needs
/// no registry. The references are systemd's to fill in, the `$${NAME}`
/// escape and other `$` reach the container as text, and each dockerArgs
/// item is split into the words docker expects.
#[test]
fn a_present_image_starts_with_no_registry_and_gets_its_references() {
    require_docker!();
    let image = test_image();
    let name = unique("present");
    let unit = rendered(&format!(
        r#"name: {name}
spec:
  image: {image}
  pull: missing
  envFiles: [/etc/kaylee-test.env]
  env:
  - name: FROM_FILE
    value: "${{HOST_IP}}"
  - name: LITERAL
    value: "$${{HOST_IP}} and $HOME"
  dockerArgs: ["--init", "--label {TEST_LABEL}", "--label 'spaced=a b'", "-e ARG=${{HOST_IP}}:80"]
  cmd: sleep 1000
"#
    ));
    if let Some((words, out)) = start_pre(&unit, Duration::from_secs(60)) {
        panic!(
            "{words:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let (words, _) = argv(unit.get("Service", "ExecStart").next().expect("ExecStart"));
    let name_at = words.iter().position(|w| w == "--name").expect("--name") + 1;
    let container = words[name_at].clone();
    let mut run_client = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker run");
    let guard = adopt_when_running(&container, &mut run_client);
    let env = guard.inspect("{{json .Config.Env}}");
    for expected in [
        "FROM_FILE=192.0.2.7",
        "LITERAL=${HOST_IP} and $HOME",
        "ARG=192.0.2.7:80",
    ] {
        assert!(
            env.contains(&format!("\"{expected}\"")),
            "{expected} in {env}"
        );
    }
    let labels = guard.inspect("{{json .Config.Labels}}");
    assert!(labels.contains(r#""spaced":"a b""#), "{labels}");
    assert!(
        labels.contains(&format!(r#""kaylee.name":"{name}""#)),
        "{labels}"
    );

    // ExecStop stops it; docker run reports the stop as 143 (SIGTERM),
    // one of SuccessExitStatus=.
    let (stop, _) = argv(unit.get("Service", "ExecStop").next().expect("ExecStop"));
    let out = run(&stop, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = wait_timeout(&mut run_client, Duration::from_secs(30)).expect("docker run ends");
    let code = status.code().expect("an exit code").to_string();
    let success = unit
        .get("Service", "SuccessExitStatus")
        .next()
        .expect("SuccessExitStatus")
        .expanded
        .clone();
    assert!(
        success.split(' ').any(|c| c == code),
        "docker run exited {code}, not in {success}"
    );
    drop(guard);
}

/// Waits until `container` runs, and takes charge of it by id.
fn adopt_when_running(container: &str, client: &mut Child) -> Container {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = docker(&[
            "inspect",
            "--format",
            "{{.Id}} {{.State.Running}}",
            container,
        ]);
        let answer = text(&out.stdout);
        if let Some((id, "true")) = answer.trim().split_once(' ') {
            return Container::adopt(id);
        }
        if let Ok(Some(status)) = client.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = client.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            if let Some((id, _)) = answer.trim().split_once(' ') {
                drop(Container::adopt(id));
            }
            panic!("docker run ended ({status:?}) before {container} ran: {stderr}");
        }
        assert!(Instant::now() < deadline, "{container} never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `never`: the start only checks that the image is there: a present one
/// passes with no registry; with it missing, the start fails and nothing
/// is pulled.
#[test]
fn never_checks_the_image_and_never_pulls() {
    require_docker!();
    let present = rendered(&format!(
        "name: {}\nspec:\n  image: {}\n  pull: never\n",
        unique("never-present"),
        test_image()
    ));
    if let Some((words, out)) = start_pre(&present, Duration::from_secs(30)) {
        panic!("{words:?} failed: {}", text(&out.stderr));
    }
    let image = format!("{}:1", unique("kaylee-absent"));
    let unit = rendered(&format!(
        "name: {}\nspec:\n  image: {image}\n  pull: never\n",
        unique("never")
    ));
    for opt in unit.get("Service", "ExecStartPre") {
        let (words, _) = argv(opt);
        assert!(!words.iter().any(|w| w.contains("pull")), "{words:?}");
    }
    let (words, out) = start_pre(&unit, Duration::from_secs(30)).expect("the start fails");
    assert!(words.contains(&"inspect".to_string()), "{words:?}");
    assert!(
        text(&out.stderr).contains("No such image"),
        "{}",
        text(&out.stderr)
    );
}

/// `missing` with the image absent pulls it (here from a registry that
/// refuses connections, so the start fails at once).
#[test]
fn missing_pulls_an_absent_image() {
    require_docker!();
    let image = format!("127.0.0.1:1/{}:1", unique("kaylee-absent"));
    let unit = rendered(&format!(
        "name: {}\nspec:\n  image: '{image}'\n",
        unique("missing")
    ));
    let (words, out) = start_pre(&unit, Duration::from_secs(30)).expect("the pull fails");
    assert_eq!(&words[..2], ["/bin/sh", "-c"]);
    assert_eq!(words.last(), Some(&image));
    let err = text(&out.stderr);
    assert!(err.contains("connection refused"), "{err}");
}

/// A pull that hangs (a registry that accepts and never answers) is cut
/// off after `pullTimeout`, and timeout(1) says so with 124.
#[test]
fn a_hanging_pull_ends_after_the_pull_timeout() {
    require_docker!();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    // Accepts every connection and never answers, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let image = format!("127.0.0.1:{port}/{}:1", unique("kaylee-slow"));
    let unit = rendered(&format!(
        "name: {}\nspec:\n  image: '{image}'\n  pull: always\n  pullTimeout: 2s\n",
        unique("slow")
    ));
    let started = Instant::now();
    let (words, out) = start_pre(&unit, Duration::from_secs(60)).expect("the pull fails");
    let took = started.elapsed();
    assert_eq!(words[0], "/usr/bin/timeout", "{words:?}");
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
}
