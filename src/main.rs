//! `kaylee`: the CLI and the server in one binary.

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate { files } => commands::validate::run(files),
        Command::Render {
            file,
            render,
            restart_marker,
            output,
        } => commands::render::run(file, render, restart_marker, *output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("kaylee: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}
