//! `kaylee`: the CLI and the server in one binary.

mod cli;
mod commands;
mod exporter;
mod http;
mod logging;
mod table;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

/// glibc's malloc took a third of the leader's CPU at cold start, much of it
/// waiting on arena locks between worker threads; mimalloc's per-thread
/// heaps do not contend. `no_thp`: mimalloc asks for transparent huge pages
/// on its arenas by default, which took peak RSS at 10,000 units from 57 to
/// 86 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            eprintln!("kaylee: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
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
        Command::Validate { files } => commands::validate::run(files),
        Command::Render {
            file,
            render,
            restart_marker,
            output,
        } => commands::render::run(file, render, restart_marker, *output),
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
