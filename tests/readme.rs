//! The README stays true: every flag of every command is documented, every
//! unit field is in the reference, and CI runs the test command it shows;
//! so does the env example: every server variable is in it.

use std::process::Command;

const README: &str = include_str!("../README.md");
const COMMANDS: &[&str] = &[
    "validate",
    "render",
    "server",
    "run",
    "ls",
    "restart",
    "rm",
    "status",
    "history",
    "rollback",
    "diff",
    "completions",
];

fn flags_of(command: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kaylee"))
        .args([command, "--help"])
        .output()
        .expect("kaylee runs");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|w| {
            w.chars()
                .skip(2)
                .all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_flag_of_every_command_is_in_the_readme() {
    for command in COMMANDS {
        let flags = flags_of(command);
        assert!(
            flags.contains(&"--help".to_string()),
            "{command}: {flags:?}"
        );
        for flag in flags {
            assert!(
                README.contains(&flag),
                "README does not mention {flag} of `kaylee {command}`"
            );
        }
    }
}

/// deploy/kaylee.env.example says it documents every variable the server
/// reads; `kaylee server --help` names them as `[env: NAME=…]`.
#[test]
fn every_server_variable_is_in_the_env_example() {
    let example = include_str!("../deploy/kaylee.env.example");
    let out = Command::new(env!("CARGO_BIN_EXE_kaylee"))
        .args(["server", "--help"])
        .output()
        .expect("kaylee runs");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let variables: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(variables.contains(&"KAYLEE_WORKERS"), "{variables:?}");
    for variable in variables {
        assert!(
            example.contains(&format!("#{variable}=")),
            "deploy/kaylee.env.example does not document {variable}"
        );
    }
}

#[test]
fn every_unit_field_is_in_the_reference() {
    for field in [
        "`name`",
        "`spec.replicas`",
        "`spec.maxReplicasPerHost`",
        "`spec.image`",
        "`spec.pull`",
        "`spec.pullTimeout`",
        "`spec.cmd`",
        "`spec.envFiles`",
        "`spec.env`",
        "`spec.volumes`",
        "`spec.machine`",
        "`spec.machineId`",
        "`spec.dockerArgs`",
        "`spec.global`",
        "`spec.conflicts`",
        "`spec.startupDelay`",
        "`spec.minReadySeconds`",
        "`spec.progressDeadline`",
        "`spec.onFailure`",
        "`spec.maxSurge`",
        "`spec.updateOrder`",
    ] {
        assert!(
            README.contains(&format!("| {field} |")),
            "unit reference lacks {field}"
        );
    }
}

/// The README gives the code's limits, in its own number format.
#[test]
fn the_line_and_word_limits_are_the_code_s() {
    use kaylee_controllers::fleet::quote::{MAX_LINE_BYTES, MAX_WORD_BYTES};
    let thousands = |n: usize| format!("{},{:03}", n / 1000, n % 1000);
    for n in [MAX_WORD_BYTES, MAX_LINE_BYTES] {
        let said = format!("{} bytes", thousands(n));
        assert!(README.contains(&said), "README does not say {said}");
    }
    for stale in ["1996", "1,996"] {
        assert!(!README.contains(stale), "README still says {stale}");
    }
}

#[test]
fn ci_runs_the_test_command_the_readme_shows() {
    let ci =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    assert!(ci.contains("deploy/test.sh"), "{ci}");
    assert!(README.contains("deploy/test.sh"));
    assert!(README.contains("deploy/quickstart.sh"));
    for script in ["deploy/test.sh", "deploy/quickstart.sh"] {
        let path = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&path).exists(), "{script}");
    }
}
