//! What may appear in an instance key, and where the machine id comes from.
//!
//! Every piece of `<prefix>/instances/<machine-id>/<unit>/<container>` comes
//! from outside (a flag, a file, a container label, a container name), so
//! each is checked to be one plain key segment before it is used.

use super::RegistratorError;
use std::path::Path;

/// The container label naming the Kaylee unit a container belongs to.
pub const UNIT_LABEL: &str = "kaylee.name";

/// Where the host's machine id lives (the id fleet itself uses).
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// Longest container name or machine id accepted in a key.
const MAX_SEGMENT: usize = 255;

/// Whether `s` is a valid `kaylee.name` label value, i.e. a unit name:
/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`.
pub fn is_valid_unit_name(s: &str) -> bool {
    is_segment(s, 63)
}

/// Whether `name` is the container name of a fleet unit of Kaylee unit
/// `unit` under `unit_prefix`: `<prefix>_<unit>_<spec-hash>_<group>_<n>`
/// (what `fleet::container_name` makes of `<prefix>:<unit>:…:<n>.service`).
/// Only those are Kaylee's: a container a person started with the label by
/// hand is not.
pub fn is_fleet_container(name: &str, unit_prefix: &str, unit: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(unit_prefix)
        .and_then(|r| r.strip_prefix('_'))
        .and_then(|r| r.strip_prefix(unit))
        .and_then(|r| r.strip_prefix('_'))
    else {
        return false;
    };
    let hex6 = |s: &str| s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut parts = rest.split('_');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(hash), Some(group), Some(n), None) => {
            hex6(hash)
                && hex6(group)
                && !n.starts_with('0')
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Whether `s` (without Docker's leading `/`) may be used as the container
/// segment of a key: `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, at most 255 bytes, the
/// shape Docker itself allows for names.
pub fn is_valid_container_name(s: &str) -> bool {
    is_segment(s, MAX_SEGMENT)
}

/// Whether `s` may be used as the machine-id segment of a key (same shape
/// as a container name; `/etc/machine-id` holds 32 hex digits).
pub fn is_valid_machine_id(s: &str) -> bool {
    is_segment(s, MAX_SEGMENT)
}

fn is_segment(s: &str, max_len: usize) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    s.len() <= max_len
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// This machine's id: `flag` (from `--machine-id`) if given, else the
/// trimmed contents of `/etc/machine-id`.
pub fn machine_id(flag: Option<&str>) -> Result<String, RegistratorError> {
    machine_id_from(flag, Path::new(MACHINE_ID_PATH))
}

/// [`machine_id`] reading the fallback from `path` instead of
/// `/etc/machine-id`.
pub fn machine_id_from(flag: Option<&str>, path: &Path) -> Result<String, RegistratorError> {
    let (id, source) = match flag {
        Some(flag) => (flag.trim().to_string(), "--machine-id".to_string()),
        None => match std::fs::read_to_string(path) {
            Ok(s) => (s.trim().to_string(), path.display().to_string()),
            Err(e) => {
                return Err(RegistratorError::MachineId(format!(
                    "no --machine-id given and cannot read {}: {e}",
                    path.display()
                )));
            }
        },
    };
    if id.is_empty() {
        return Err(RegistratorError::MachineId(format!("{source} is empty")));
    }
    if !is_valid_machine_id(&id) {
        return Err(RegistratorError::MachineId(format!(
            "{source} gives {id:?}, which is not a valid machine id \
             (letters, digits, '_', '.', '-'; starting with a letter or digit; at most {MAX_SEGMENT})"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        for ok in ["a", "api", "A9", "web_1.x-y", &"a".repeat(63)] {
            assert!(is_valid_unit_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            ".a",
            "a/b",
            "/a",
            "a b",
            "ä",
            "a\n",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_unit_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_fleet_unit_containers_are_kaylee_s() {
        assert!(is_fleet_container("k_api_19c656_dc608f_1", "k", "api"));
        assert!(is_fleet_container(
            "k_my_api_19c656_dc608f_12",
            "k",
            "my_api"
        ));
        for foreign in [
            "k_api_19c656_dc608f_01",
            "k_api_19c656_dc608f",
            "k_api_19c656_dc608f_1_x",
            "k_api_19C656_dc608f_1",
            "k_apix_19c656_dc608f_1",
            "kk_api_19c656_dc608f_1",
            "debug-api",
            "api",
        ] {
            assert!(!is_fleet_container(foreign, "k", "api"), "{foreign}");
        }
    }

    #[test]
    fn container_names() {
        assert!(is_valid_container_name("k_api_19c656_dc608f_1"));
        assert!(is_valid_container_name(&"a".repeat(255)));
        assert!(!is_valid_container_name(&"a".repeat(256)));
        assert!(!is_valid_container_name("/k_api"));
        assert!(!is_valid_container_name("a/b"));
        assert!(!is_valid_container_name(".."));
    }

    fn temp_file(name: &str, contents: Option<&str>) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(format!("kaylee-machine-id-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        if let Some(c) = contents {
            std::fs::write(&p, c).expect("write temp file");
        }
        p
    }

    #[test]
    fn flag_wins() {
        let p = temp_file("flag", Some("fromfile\n"));
        assert_eq!(
            machine_id_from(Some("node-1"), &p).ok(),
            Some("node-1".into())
        );
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn file_is_trimmed() {
        let p = temp_file("file", Some("  9ac71e49f00d4c1b8c4e5a3f0e0b1c2d\n"));
        assert_eq!(
            machine_id_from(None, &p).ok(),
            Some("9ac71e49f00d4c1b8c4e5a3f0e0b1c2d".into())
        );
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let p = temp_file("missing", None);
        let err = machine_id_from(None, &p).expect_err("no id").to_string();
        assert!(err.contains("--machine-id"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn empty_or_invalid_ids_are_refused() {
        let p = temp_file("empty", Some("\n"));
        assert!(machine_id_from(None, &p).is_err());
        let _ = std::fs::remove_file(p);
        assert!(machine_id_from(Some(""), Path::new("/nonexistent")).is_err());
        assert!(machine_id_from(Some("a/b"), Path::new("/nonexistent")).is_err());
    }
}
