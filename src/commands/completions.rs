//! `kaylee completions <shell>`: the completion script on stdout, e.g.
//! `kaylee completions bash > /etc/bash_completion.d/kaylee`.

use super::Result;
use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

/// The script is built in memory and written through `output`:
/// clap_complete panics on a failed write.
pub fn run(shell: Shell) -> Result {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kaylee", &mut script);
    crate::output::print(&String::from_utf8_lossy(&script))
}
