//! Every command that prints, with its stdout closed under it or full: it
//! ends like `cat` (killed by SIGPIPE, a shell's 141) on a closed pipe, and
//! with one line on stderr and exit 1 on any other write error; it never
//! panics (Rust ignores SIGPIPE, and `println!` panics on a failed write).

mod support;

use kaylee_controllers::units::history::Revision;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use support::etcd::Etcd;
use support::kaylee::{BIN, cli_ok};
use support::wait_timeout;

const SIGPIPE: i32 = 13;
const FULL: &str = "kaylee: cannot write to stdout: No space left on device (os error 28)";

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn finish(mut cmd: Command, stdout: Stdio, args: &[&str]) -> (ExitStatus, String) {
    let child = cmd.stdout(stdout).spawn().expect("kaylee runs");
    let out = child.wait_with_output().expect("kaylee finishes");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "kaylee {args:?}:\n{stderr}");
    (out.status, stderr)
}

/// Runs with stdout a pipe whose reader is already gone.
fn closed(args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    finish(command(args), Stdio::from(writer), args)
}

/// Runs with stdout `/dev/full`: every write fails with ENOSPC.
fn full(args: &[&str]) -> (ExitStatus, String) {
    let dev_full = OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    finish(command(args), Stdio::from(dev_full), args)
}

fn assert_sigpipe(args: &[&str]) {
    let (status, stderr) = closed(args);
    assert_eq!(
        status.signal(),
        Some(SIGPIPE),
        "kaylee {args:?}: {status:?}\n{stderr}"
    );
    assert!(!stderr.contains("cannot write"), "{args:?}: {stderr}");
}

fn assert_full(args: &[&str]) {
    let (status, stderr) = full(args);
    assert_eq!(status.code(), Some(1), "kaylee {args:?}:\n{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("stdout"))
            .collect::<Vec<_>>(),
        [FULL],
        "kaylee {args:?}"
    );
    assert_eq!(stderr.lines().last(), Some(FULL), "kaylee {args:?}");
}

const OFFLINE: &[&[&str]] = &[
    &["validate", "--offline", "deploy/examples/countly.yaml"],
    &["render", "--offline", "deploy/examples/countly.yaml"],
    &[
        "render",
        "--offline",
        "deploy/examples/countly.yaml",
        "-o",
        "json",
    ],
    &["completions", "bash"],
    &["--help"],
    &["render", "--help"],
    &["help"],
    &["--version"],
];

#[test]
fn offline_commands_end_like_cat_on_a_closed_pipe() {
    for args in OFFLINE {
        assert_sigpipe(args);
    }
}

#[test]
fn offline_commands_say_one_line_and_exit_1_on_a_full_stdout() {
    for args in OFFLINE {
        assert_full(args);
    }
}

/// `kaylee render big.yaml | head -1`: the reader leaves after one line,
/// mid-output.
#[test]
fn a_reader_that_leaves_early_ends_render_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big.yaml");
    std::fs::write(
        &big,
        "name: big\nspec:\n  replicas: 1000\n  image: busybox:1\n  cmd: sleep 1000\n",
    )
    .expect("write the unit");
    let big = big.to_str().expect("UTF-8 path");
    let args = ["render", "--offline", big];
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kaylee runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("one line");
    assert!(first.starts_with("# k:big:"), "{first}");
    // Dropping the reader closes the pipe, as `head` exiting does.
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("kaylee ends");
    assert_eq!(status.signal(), Some(SIGPIPE), "{status:?}");
}

#[test]
fn commands_that_ask_etcd_end_like_cat_or_say_one_line() {
    let etcd = Etcd::start();
    let e = etcd.endpoint();
    let with = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--etcd-endpoints".to_string(), e.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let run = with(&["run", "deploy/examples/countly.yaml"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    assert_sigpipe(&run);
    assert_full(&run);
    let reads = [
        with(&["ls"]),
        with(&["ls", "-o", "json"]),
        with(&["status", "countly", "--fleet-etcd-api", "v3"]),
        with(&["status", "countly", "--fleet-etcd-api", "v3", "-o", "json"]),
        with(&["restart", "countly"]),
    ];
    for args in &reads {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_sigpipe(&args);
        assert_full(&args);
    }
    // A revision as a leader records it: history and rollback print too.
    let unit = kaylee_controllers::spec::from_yaml(
        &std::fs::read_to_string("deploy/examples/countly.yaml").expect("example"),
        "countly.yaml",
    )
    .expect("a valid example");
    let record = Revision::new(1, 1, "abcdef", &unit).mark_available();
    etcd.put_v3("/kaylee/history/countly/0000000001", &record.to_json());
    let more = [
        with(&["history", "countly"]),
        with(&["history", "countly", "-o", "json"]),
        with(&["rollback", "countly", "--to-revision", "1"]),
        with(&[
            "diff",
            "deploy/examples/countly.yaml",
            "--fleet-etcd-api",
            "v3",
        ]),
    ];
    for args in &more {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_sigpipe(&args);
        assert_full(&args);
    }
    let rm = with(&["rm", "countly"]);
    let rm: Vec<&str> = rm.iter().map(String::as_str).collect();
    assert_sigpipe(&rm);
    cli_ok(&e, &["run", "deploy/examples/countly.yaml"]);
    assert_full(&rm);
}
