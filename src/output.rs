//! Every line a command prints goes through here, so that stdout closing
//! or filling up ends the command cleanly instead of panicking: Rust
//! ignores SIGPIPE, and `println!` panics on any write error
//! (`kaylee render big.yaml | head -1`, `kaylee ls > /dev/full`).
//!
//! - A closed pipe (EPIPE) ends the process the way it ends `cat` or `ls`:
//!   killed by SIGPIPE, without a word (a shell reports status 141, and
//!   `set -o pipefail` sees that).
//! - Any other write error (a full disk, an I/O error) prints one line on
//!   stderr and exits 1.
//!
//! Messages to stderr are written best-effort: when stderr itself is gone
//! there is nobody left to tell.

use crate::commands::{Exit, Result};
use std::io::{ErrorKind, IsTerminal, Write};

/// Writes `text` to stdout now (not left in a buffer to fail unseen at
/// exit).
pub fn print(text: &str) -> Result {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// `println!` for commands: `outln!(...)?` returns the write's [`Exit`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Flushes stdout, mapping a failure like [`print`] does.
pub fn flush() -> Result {
    std::io::stdout().flush().map_err(write_error)
}

fn write_error(e: std::io::Error) -> Exit {
    if e.kind() == ErrorKind::BrokenPipe {
        Exit::closed_pipe()
    } else {
        Exit::runtime(format!("cannot write to stdout: {e}"))
    }
}

/// One line on stderr, ignoring a stderr that cannot be written.
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Ends the process as a program without Rust's SIGPIPE handling would end
/// on a write to a closed pipe: by the signal, with its default action.
pub fn die_of_sigpipe() -> ! {
    use nix::sys::signal::{SigHandler, Signal, raise, signal};
    // SAFETY: the default disposition runs no code of ours in the handler;
    // nothing else in the process relies on SIGPIPE being ignored from here
    // on, as it is about to end.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = raise(Signal::SIGPIPE);
    // Only if the signal could not be raised: what a shell would report.
    std::process::exit(128 + Signal::SIGPIPE as i32)
}

/// clap's help and version text (`--help`, `-V`) through [`print`], in
/// colour on a terminal as clap would; clap's own printing ignores errors
/// and would exit 0 after a failed write.
pub fn clap_message(e: &clap::Error) -> Result {
    let rendered = e.render();
    if std::io::stdout().is_terminal() {
        print(&rendered.ansi().to_string())
    } else {
        print(&rendered.to_string())
    }
}
