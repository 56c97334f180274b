use super::{Exit, Result, load_unit};
use std::path::PathBuf;

/// Checks every file, printing "ok" or every error of each; exit 2 if any
/// file is invalid.
pub fn run(files: &[PathBuf]) -> Result {
    let mut failed = 0;
    for f in files {
        match load_unit(f) {
            Ok(_) => crate::outln!("{}: ok", f.display())?,
            Err(e) => {
                crate::output::eprint_line(&e);
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Exit::bad_input(format!(
            "{n} of {} file(s) invalid",
            files.len()
        ))),
    }
}
