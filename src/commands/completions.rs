//! `kaylee completions <shell>`: the completion script on stdout, e.g.
//! `kaylee completions bash > /etc/bash_completion.d/kaylee`.

use super::Result;
use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

pub fn run(shell: Shell) -> Result {
    clap_complete::generate(shell, &mut Cli::command(), "kaylee", &mut std::io::stdout());
    Ok(())
}
