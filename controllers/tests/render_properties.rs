//! Property tests for rendering (docs/design.md §4, "Quoting is security"): whatever
//! an operator writes into env values, `cmd`, docker args or volume options,
//! systemd (read by the independent parser in `support/systemd.rs`) sees
//! exactly the intended argv, and no value adds a line, option or section.

mod support;

use kaylee_controllers::fleet::unitfile::{UnitOption, serialize};
use kaylee_controllers::fleet::{FleetUnit, RenderOptions, render};
use kaylee_controllers::spec::{SpecError, from_json};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use support::systemd::{self, Kind};
use support::unitfile::deserialize;
use support::units::{self, DOCKER, GenUnit, Layout, START_MARGIN_SECS};
use support::words::LINE_LIMIT;

const SOURCE: &str = "/kaylee/units/t";
/// Longest word (escaped, on a line of its own: two spaces before it, ` \`
/// after) the design lets through.
const MAX_ESCAPED_WORD: usize = LINE_LIMIT - 4;

/// An upper bound of any systemd escaping of `word`: two quotes, and at
/// most four bytes (`\xNN`) per input byte.
fn surely_fits(word: &str) -> bool {
    4 * word.len() + 2 <= MAX_ESCAPED_WORD
}

/// A refusal is legitimate only for a word that may really be too long once
/// escaped (or, for `cmd`, that does not split like a shell would), and the
/// error must name the field that holds it.
fn check_refusal(g: &GenUnit, e: &SpecError) -> Result<(), TestCaseError> {
    let too_long = e.message.contains("once escaped for systemd");
    let index = |prefix: &str, suffix: &str| -> Option<usize> {
        e.field
            .strip_prefix(prefix)?
            .strip_suffix(suffix)?
            .parse()
            .ok()
    };
    let word = if let Some(i) = index("spec.env[", "].value") {
        let (n, v) = &g.env[i];
        Some(format!("{n}={v}"))
    } else if let Some(i) = index("spec.dockerArgs[", "]") {
        let item = &g.docker_args[i];
        // A word-initial `#` is refused before the split is tried.
        if item.contains('#') && e.message.contains("`#` at the start") {
            return Ok(());
        }
        match shlex::split(item) {
            None => {
                prop_assert!(e.message.contains("cannot be split"), "{e}");
                return Ok(());
            }
            Some(words) if words.is_empty() => {
                prop_assert!(e.message.contains("no argument at all"), "{e}");
                return Ok(());
            }
            Some(words) => words.into_iter().find(|w| !surely_fits(w)),
        }
    } else if let Some(i) = index("spec.volumes[", "].options") {
        Some(format!("--opt={}", g.volumes[i].options))
    } else if let Some(i) = index("spec.volumes[", "].path") {
        Some(format!("{}:{}", g.volumes[i].id, g.volumes[i].path))
    } else if e.field == "spec.cmd" {
        // A word-initial `#` is refused before the split is tried.
        let hash_word = g.cmd.as_deref().is_some_and(|c| c.contains('#'))
            && e.message.contains("`#` at the start");
        match g.cmd_words() {
            None => {
                prop_assert!(e.message.contains("cannot be split") || hash_word, "{e}");
                return Ok(());
            }
            Some(_)
                if g.cmd.as_deref().is_some_and(|c| c.contains('#'))
                    && e.message.contains("`#` at the start") =>
            {
                return Ok(());
            }
            Some(words) => words.into_iter().find(|w| !surely_fits(w)),
        }
    } else {
        None
    };
    prop_assert!(too_long, "refused for another reason: {e}");
    let word = word.ok_or_else(|| TestCaseError::fail(format!("unexpected refusal: {e}")))?;
    prop_assert!(
        !surely_fits(&word),
        "a {} byte word refused: {e}",
        word.len()
    );
    Ok(())
}

/// Every value of the generated unit, as the words systemd must pass on.
fn all_words(g: &GenUnit) -> Vec<String> {
    let mut w: Vec<String> = g.env.iter().map(|(n, v)| format!("{n}={v}")).collect();
    w.extend(g.docker_words().unwrap_or_default());
    w.extend(g.volumes.iter().map(|v| format!("--opt={}", v.options)));
    w.extend(g.cmd_words().unwrap_or_default());
    w
}

fn one_command<'a>(
    opt: &'a systemd::Opt,
    prefixes: &str,
) -> Result<&'a Vec<String>, TestCaseError> {
    prop_assert_eq!(opt.commands.len(), 1, "line {}: {}", opt.line, &opt.value);
    prop_assert_eq!(&opt.commands[0].prefixes, prefixes, "line {}", opt.line);
    Ok(&opt.commands[0].argv)
}

/// Reads one rendered fleet unit back and compares it with the intent.
fn check_unit_text(g: &GenUnit, u: &FleetUnit) -> Result<(), TestCaseError> {
    let name = u.name.to_name();
    let parts: Vec<&str> = name.trim_end_matches(".service").split(':').collect();
    prop_assert_eq!(parts.len(), 5, "{}", name);
    prop_assert_eq!((parts[0], parts[1]), ("k", g.name.as_str()));
    let hex6 = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_hexdigit());
    prop_assert!(hex6(parts[2]) && hex6(parts[3]), "{}", name);
    prop_assert!(name.ends_with(".service"));
    let container = parts.join("_");
    let text = &u.text;

    for line in text.split('\n') {
        prop_assert!(line.len() <= LINE_LIMIT, "{} byte line", line.len());
    }
    let parsed = systemd::parse(text);
    prop_assert!(
        parsed.problems.is_empty(),
        "{:?}\n{}",
        parsed.problems,
        text
    );
    prop_assert_eq!(parsed.keys(), g.expected_keys(), "{}", text);

    let one = |key: &str| parsed.get("Unit", key).next().map(|o| o.expanded.clone());
    let description = match g.layout {
        Layout::Global => format!("Kaylee unit {} (global)", g.name),
        _ => format!("Kaylee unit {} (replica {})", g.name, parts[4]),
    };
    prop_assert_eq!(one("Description"), Some(description));
    prop_assert_eq!(one("Requires"), Some("flanneld.service".into()));
    prop_assert_eq!(one("After"), Some("flanneld.service".into()));
    let values = |section: &str, key: &str| -> Vec<String> {
        (parsed.get(section, key))
            .map(|o| o.expanded.clone())
            .collect()
    };
    prop_assert_eq!(values("Service", "EnvironmentFile"), g.env_files.clone());
    let start_timeout = (g.pull_timeout() + START_MARGIN_SECS).to_string();
    prop_assert_eq!(values("Service", "TimeoutStartSec"), vec![start_timeout]);
    prop_assert_eq!(values("Service", "SuccessExitStatus"), vec!["137 143"]);
    prop_assert_eq!(values("Service", "Restart"), vec!["always"]);
    prop_assert_eq!(values("Service", "RestartSec"), vec!["30"]);
    prop_assert_eq!(values("X-Fleet", "MachineMetadata"), g.machine.clone());
    let conflicts = g.expected_conflicts(parts[2], parts[3]);
    prop_assert_eq!(values("X-Fleet", "Conflicts"), conflicts);

    let pre: Vec<&systemd::Opt> = parsed.get("Service", "ExecStartPre").collect();
    let expected_pre = g.expected_pre(&container);
    prop_assert_eq!(pre.len(), expected_pre.len());
    for (opt, (prefixes, argv)) in pre.into_iter().zip(expected_pre) {
        prop_assert_eq!(one_command(opt, prefixes)?, &argv);
    }
    let start = parsed.get("Service", "ExecStart").next().unwrap();
    prop_assert_eq!(one_command(start, "")?, &g.expected_run(&container));
    let stop = parsed.get("Service", "ExecStop").next().unwrap();
    let stop_argv: Vec<String> = [DOCKER, "stop", &container].map(String::from).to_vec();
    prop_assert_eq!(one_command(stop, "-")?, &stop_argv);

    // fleet stores what go-systemd writes back: it must be these bytes.
    let back = deserialize(text).map_err(TestCaseError::fail)?;
    let options: Vec<UnitOption> = back
        .iter()
        .map(|o| UnitOption::new(known(&o.section), known(&o.name), o.value.clone()))
        .collect();
    prop_assert_eq!(&serialize(&options), text);
    Ok(())
}

/// `UnitOption` wants `&'static str` names; every name rendering uses.
fn known(s: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "Unit",
        "Service",
        "X-Fleet",
        "Description",
        "Requires",
        "After",
        "EnvironmentFile",
        "TimeoutStartSec",
        "ExecStartPre",
        "ExecStart",
        "ExecStop",
        "SuccessExitStatus",
        "Restart",
        "RestartSec",
        "MachineMetadata",
        "MachineID",
        "Global",
        "Conflicts",
    ];
    NAMES
        .iter()
        .find(|n| **n == s)
        .copied()
        .unwrap_or("?unknown?")
}

fn check_render(g: &GenUnit) -> Result<(), TestCaseError> {
    let doc = g.to_json();
    let unit = match from_json(&doc, SOURCE) {
        Ok(unit) => unit,
        Err(errors) => {
            for e in errors.iter() {
                check_refusal(g, e)?;
            }
            return Ok(());
        }
    };
    for w in all_words(g) {
        prop_assert!(
            w.len() <= MAX_ESCAPED_WORD,
            "accepted a {} byte word",
            w.len()
        );
    }
    prop_assert!(
        g.cmd_words().is_some(),
        "accepted a cmd that does not split"
    );
    prop_assert!(
        (g.docker_args.iter()).all(|a| shlex::split(a).is_some_and(|w| !w.is_empty())),
        "accepted a docker arg that is no word: {:?}",
        g.docker_args
    );
    let opts = RenderOptions::default();
    let rendered = render(&unit, "", &opts);
    prop_assert_eq!(&rendered, &render(&unit, "", &opts), "not deterministic");
    prop_assert_eq!(rendered.units.len() as u32, g.replicas());
    for (i, u) in rendered.units.iter().enumerate() {
        prop_assert_eq!(u.name.replica, i as u32 + 1);
        check_unit_text(g, u)?;
    }
    Ok(())
}

fn replicated(name: &str, replicas: u32, max: Option<u32>) -> Vec<FleetUnit> {
    replicated_image(name, replicas, max, "busybox")
}

fn replicated_image(name: &str, replicas: u32, max: Option<u32>, image: &str) -> Vec<FleetUnit> {
    let mut spec = json!({"image": image, "replicas": replicas});
    if let Some(m) = max {
        spec["maxReplicasPerHost"] = json!(m);
    }
    let doc = json!({"name": name, "spec": spec}).to_string();
    let unit = from_json(&doc, SOURCE).expect("a valid replicated unit");
    render(&unit, "", &RenderOptions::default()).units
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn values_never_escape_their_word(g in units::unit()) {
        check_render(&g)?;
    }

    #[test]
    fn conflict_groups_bound_replicas_per_host(
        name in "[a-z][a-z0-9-]{0,10}",
        n in 1u32..=60,
        m in 1u32..=60,
        max in prop::option::of(1u32..=10),
    ) {
        let units = replicated(&name, n, max);
        prop_assert_eq!(units.len() as u32, n);
        // The same unit at another image: another template.
        let other = replicated_image(&name, n, max, "busybox:2");
        let names: HashSet<String> = units.iter().map(|u| u.name.to_name()).collect();
        prop_assert_eq!(names.len(), units.len(), "names are not unique");
        let groups: BTreeSet<&str> = units.iter().map(|u| u.name.group.as_str()).collect();
        if let Some(max) = max {
            prop_assert!(groups.len() as u32 <= max, "{} groups > {}", groups.len(), max);
        }
        for u in &units {
            let parsed = systemd::parse(&u.text);
            prop_assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
            let conflicts: Vec<&str> = parsed
                .get("X-Fleet", "Conflicts")
                .map(|o| o.expanded.as_str())
                .collect();
            let own = match max {
                Some(_) => format!("k:{name}:*:{}:*.service", u.name.group),
                None => format!("k:{name}:{}:{}:*.service", u.name.spec_hash, u.name.group),
            };
            prop_assert_eq!(&conflicts, &vec![own.as_str()]);
            // fleet keeps two units apart iff the glob matches: same group only.
            for v in &units {
                let same = v.name.group == u.name.group;
                prop_assert_eq!(units::glob_match(&own, &v.name.to_name()), same);
            }
            // With a limit, the same group of any other template too: old
            // and new replicas of a rollout share the host's budget.
            for v in &other {
                let same = v.name.group == u.name.group && max.is_some();
                prop_assert_eq!(units::glob_match(&own, &v.name.to_name()), same);
            }
        }
        // Scaling n → m keeps every surviving replica's name and text.
        let scaled = replicated(&name, m, max);
        for (a, b) in units.iter().zip(&scaled) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.text, &b.text);
        }
    }
}

/// A unit carrying `word` as an env value, a docker arg, a cmd word and a
/// volume option.
fn with_word(word: &str) -> GenUnit {
    GenUnit {
        name: "demo".into(),
        image: "busybox:1".into(),
        pull: None,
        pull_timeout: None,
        layout: Layout::Replicated {
            replicas: 2,
            max: Some(1),
        },
        cmd: shlex::try_join(["sh", "-c", word]).ok(),
        env_files: vec!["/etc/50%.env".into()],
        env: vec![("V".into(), word.into())],
        volumes: vec![units::GenVolume {
            id: "data".into(),
            driver: "local".into(),
            path: "/data".into(),
            options: word.into(),
        }],
        machine: vec!["ssd=true".into()],
        docker_args: vec![shlex::try_join([word]).unwrap_or_default(), "--init".into()],
        conflicts: vec!["db".into()],
    }
}

#[test]
fn tricky_words_reach_docker_intact() {
    let long = format!("{}\n", "%$".repeat(200));
    for word in [
        "",
        ";",
        " ; ",
        "#comment",
        ";x",
        "\\",
        "\\\\;",
        "%n",
        "%%",
        "$HOME",
        "${X}",
        "$${X}",
        "$$${X}",
        "${1}",
        "${X",
        "-p ${COREOS_PRIVATE_IPV4}:80:80",
        "$$",
        "a\nb",
        "a\r\nb",
        "\n[Service]\nExecStart=/bin/sh",
        "\"'",
        "'",
        "-",
        "@x",
        "\t",
        "\u{2028}\u{85}",
        "x \\",
        long.as_str(),
    ] {
        let g = with_word(word);
        let unit = from_json(&g.to_json(), SOURCE).unwrap_or_else(|e| panic!("{word:?}: {e}"));
        let rendered = render(&unit, "", &RenderOptions::default());
        for u in &rendered.units {
            check_unit_text(&g, u).unwrap_or_else(|e| panic!("{word:?}: {e}\n{}", u.text));
        }
    }
}

#[test]
fn words_at_the_limit_are_wrapped_and_one_byte_more_is_refused() {
    let mut g = with_word("ok");
    // `V=` plus the value: exactly the longest bare word.
    g.env[0].1 = "x".repeat(MAX_ESCAPED_WORD - 2);
    g.docker_args = vec!["y".repeat(MAX_ESCAPED_WORD); 3];
    g.cmd = Some(format!("sh -c {}", "z".repeat(MAX_ESCAPED_WORD)));
    check_render(&g).unwrap();
    let unit = from_json(&g.to_json(), SOURCE).unwrap();
    let text = &render(&unit, "", &RenderOptions::default()).units[0].text;
    assert!(text.contains(" \\\n  "), "long ExecStart is wrapped");

    g.env[0].1.push('x');
    let err = from_json(&g.to_json(), SOURCE).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].field, "spec.env[0].value");
    assert!(err.0[0].message.contains("once escaped"), "{err}");
}

#[test]
fn volume_options_at_the_limit_fit_with_their_flag() {
    let mut g = with_word("ok");
    g.volumes[0].options = "o".repeat(MAX_ESCAPED_WORD - 2);
    match from_json(&g.to_json(), SOURCE) {
        Ok(_) => check_render(&g).unwrap(),
        Err(err) => {
            assert_eq!(err.0.len(), 1, "{err}");
            assert_eq!(err.0[0].field, "spec.volumes[0].options", "{err}");
        }
    }
}

/// The oracle must see what it is there to catch, or the properties prove
/// nothing.
#[test]
fn the_parser_reports_what_systemd_would_expand_or_split() {
    let kinds = |text: &str| -> Vec<Kind> {
        let p = systemd::parse(text);
        p.problems.iter().map(|p| p.kind).collect()
    };
    let exec = |v: &str| kinds(&format!("[Service]\nExecStart=/bin/echo {v}\n"));
    assert_eq!(exec("\"%%n\" 100%%"), vec![]);
    assert_eq!(exec("%n"), vec![Kind::Specifier]);
    assert_eq!(exec("\"%n\""), vec![Kind::Specifier]);
    assert_eq!(exec("$HOME"), vec![Kind::Variable]);
    assert_eq!(exec("'${X}'"), vec![]);
    assert_eq!(exec("\"a${X_1}b\""), vec![]);
    for not_a_reference in ["${1}", "\"${X\"", "\"${}\"", "\"${A B}\"", "$", "\"${é}\""] {
        assert_eq!(
            exec(not_a_reference),
            vec![Kind::Variable],
            "{not_a_reference}"
        );
    }
    assert_eq!(exec("a ; /bin/rm x"), vec![Kind::Separator]);
    assert_eq!(exec("\"a\"b"), vec![Kind::Syntax]);
    assert_eq!(exec("\"open"), vec![Kind::Syntax]);
    assert_eq!(exec("\"\\q\""), vec![Kind::Syntax]);
    assert_eq!(exec("a \\\n# hidden\n  b"), vec![Kind::CommentInValue]);
    assert_eq!(exec("a\r"), vec![Kind::Ambiguous]);
    assert_eq!(kinds("[Unit]\nDescription=50%\n"), vec![Kind::Specifier]);
    assert_eq!(kinds("Description=x\n"), vec![Kind::Syntax]);

    let p = systemd::parse(
        "# c\n[Service]\nExecStartPre=-/bin/x \"a b\" 'c\\td' \\\n  \\x41\\101\\u00e9 \"$$%%\" \\; \"$${A}${B}\"\n",
    );
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let cmd = &p.options[0].commands[0];
    assert_eq!(cmd.prefixes, "-");
    let refs = format!("${{A}}{}", systemd::reference("B"));
    assert_eq!(cmd.argv, ["/bin/x", "a b", "c\td", "AAé", "$%", ";", &refs]);
}
