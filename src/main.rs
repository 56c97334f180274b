//! `kaylee`: the CLI and the server in one binary.

mod allocator;
mod cli;
mod commands;
mod exporter;
mod http;
mod logging;
mod output;
mod table;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use commands::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::configure();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    // The log guard is kept to the end: it writes the server's last lines.
    let (_logs, runtime) = match &cli.command {
        Command::Server(args) => {
            let logs = logging::init_server(args.log_format);
            let threads = args.threads.map_or_else(default_threads, usize::from);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build();
            (Some(logs), runtime)
        }
        _ => {
            logging::init(LogFormat::Text, "warn");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            (None, runtime)
        }
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            output::eprint_line(&format!("kaylee: cannot start the async runtime: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout through `output` (a closed or full stdout
/// is handled as for every command); usage errors to stderr, exit 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    if e.use_stderr() {
        // clap's own print: in colour on a terminal, failures ignored.
        let _ = e.print();
        return ExitCode::from(code);
    }
    match output::clap_message(e) {
        Ok(()) => ExitCode::from(code),
        Err(exit) => report(exit),
    }
}

/// The end of a failed command: its message on stderr and its exit code, or
/// SIGPIPE for a closed stdout.
fn report(e: Exit) -> ExitCode {
    if e.closed_pipe {
        output::die_of_sigpipe();
    }
    if !e.message.is_empty() {
        output::eprint_line(&format!("kaylee: {}", e.message));
    }
    ExitCode::from(e.code)
}

/// One less than the cores, so an etcd on the same machine keeps one,
/// at most 2: the writer sends one transaction at a time, which 2 threads
/// of reconciles keep busy.
fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, 2)
}

async fn run(cli: Cli) -> ExitCode {
    let etcd = &cli.etcd;
    let result = match &cli.command {
        Command::Validate { files, offline } => {
            commands::validate::run(etcd, files, *offline).await
        }
        Command::Render {
            file,
            render,
            offline,
            restart_marker,
            output,
        } => commands::render::run(etcd, file, render, *offline, restart_marker, *output).await,
        Command::Server(args) => commands::server::run(etcd, args).await,
        Command::Run { files, wait } => commands::units::run(etcd, files, wait).await,
        Command::Ls { output } => commands::show::ls(etcd, *output).await,
        Command::Restart { name, wait } => commands::units::restart(etcd, name, wait).await,
        Command::Rm { name, purge } => commands::units::rm(etcd, name, *purge).await,
        Command::History { name, output } => commands::history::list(etcd, name, *output).await,
        Command::Rollback {
            name,
            to_revision,
            wait,
        } => commands::history::rollback(etcd, name, *to_revision, wait).await,
        Command::Diff {
            files,
            fleet,
            network_unit,
        } => commands::diff::run(etcd, files, fleet, network_unit).await,
        Command::Status {
            name,
            fleet,
            output,
        } => commands::show::status(etcd, name, fleet, *output).await,
        Command::Completions { shell } => commands::completions::run(*shell),
    };
    // Whatever is still buffered must reach stdout, or fail, now.
    match result.and_then(|()| output::flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}
