//! One module per command; each returns an [`Exit`] on failure.

pub mod cluster;
pub mod completions;
pub mod diff;
pub mod history;
pub mod registration;
pub mod render;
pub mod server;
pub mod show;
pub mod units;
pub mod validate;
pub mod wait;

use std::fmt;
use std::path::Path;

/// Exit codes (docs/design.md §8): 1 runtime failure, 2 bad input; stdout closed
/// under us: killed by SIGPIPE (`output.rs`).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
    /// Stdout is a pipe nobody reads any more: end quietly, as `cat` does.
    pub closed_pipe: bool,
}

impl Exit {
    pub fn runtime(message: impl fmt::Display) -> Self {
        Exit {
            code: 1,
            message: message.to_string(),
            closed_pipe: false,
        }
    }

    pub fn bad_input(message: impl fmt::Display) -> Self {
        Exit {
            code: 2,
            message: message.to_string(),
            closed_pipe: false,
        }
    }

    /// A write to stdout found the pipe closed.
    pub fn closed_pipe() -> Self {
        Exit {
            code: 1,
            message: String::new(),
            closed_pipe: true,
        }
    }
}

pub type Result<T = ()> = std::result::Result<T, Exit>;

/// Reads and parses one unit file; the errors name the file.
pub fn load_unit(path: &Path) -> std::result::Result<kaylee_controllers::spec::Unit, String> {
    let source = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("{source}: {e}"))?;
    let limit = kaylee_controllers::spec::MAX_DOCUMENT_BYTES as u64;
    if meta.len() > limit {
        return Err(format!(
            "{source}: file is {} bytes; the limit is {limit} bytes",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
    kaylee_controllers::spec::from_yaml(&text, &source).map_err(|e| e.to_string())
}

/// The line `validate` and `run` end with when files were invalid: the
/// errors themselves went to stderr before it.
pub fn invalid_files(invalid: usize, files: usize) -> String {
    format!("{invalid} of {files} file(s) invalid")
}

/// A unit's warnings on stderr, each naming the file and field.
pub fn print_warnings(path: &Path, unit: &kaylee_controllers::spec::Unit) {
    for w in kaylee_controllers::spec::warnings(unit) {
        crate::output::eprint_line(&format!(
            "warning: {}: {}: {}",
            path.display(),
            w.field,
            w.message
        ));
    }
}
