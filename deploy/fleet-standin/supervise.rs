//! A unit run for real, as systemd runs a `Type=simple` service: the
//! environment files, the `ExecStartPre`s in order (within
//! `TimeoutStartSec`), `ExecStart` supervised, the `ExecStop`s when it
//! stops or ends, then `Restart=` after `RestartSec`.

use crate::env;
use crate::exec::{self, Prepared};
use crate::runner::{Context, Reporter, Signals, requirement_missing, take_host_run};
use crate::service::{Exit, Service};
use crate::status::Status;
use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::time::Instant;

/// How one start ended.
enum Attempt {
    /// Stopped on request (not launched any more, or cancelled).
    Stopped,
    /// Ended by itself (or failed to start).
    Ended(Exit),
}

/// How one control command (an `ExecStartPre` or `ExecStop`) ended.
enum Control {
    Done(ExitStatus),
    CannotRun(std::io::Error),
    TimedOut,
    Stopped,
}

/// Runs the unit whenever it is launched, until cancelled.
pub async fn supervise(ctx: Context, mut signals: Signals, mut reporter: Reporter) {
    let service = Service::of(&ctx.unit.file);
    if !service.ignored.is_empty() {
        ctx.problems.notice(
            &format!("ignored {}", ctx.unit.hash_hex),
            format!(
                "{}: not supported here, ignored: {}",
                ctx.name,
                service.ignored.join(", ")
            ),
        );
    }
    if service.start.is_none() {
        // systemd refuses to load a service without ExecStart=.
        tracing::warn!(unit = %ctx.name, "no ExecStart=: systemd would refuse this unit");
        reporter.set(Status::LoadError);
        return;
    }
    while signals.until_launched().await {
        if requirement_missing(&ctx, &service.requires) {
            reporter.set(Status::Dead);
            signals.stop_requested().await;
            continue;
        }
        if !take_host_run(&ctx, &mut signals, &mut reporter).await {
            reporter.set(Status::Dead);
            continue;
        }
        run(&ctx, &service, &mut signals, &reporter).await;
        reporter.disown();
    }
    ctx.problems.forget(&format!("start {}", ctx.name));
}

/// Starts the unit and keeps it going (restarts included) until a stop.
async fn run(ctx: &Context, service: &Service, signals: &mut Signals, reporter: &Reporter) {
    let restart_sec = ctx.restart_sec.unwrap_or(service.restart_sec);
    loop {
        match attempt(ctx, service, signals, reporter).await {
            Attempt::Stopped => {
                reporter.set(Status::Dead);
                return;
            }
            Attempt::Ended(exit) if service.restart.applies(exit) => {
                reporter.set(Status::AutoRestart);
                if !signals.sleep(restart_sec).await {
                    reporter.set(Status::Dead);
                    return;
                }
            }
            Attempt::Ended(exit) => {
                reporter.set(if exit == Exit::Clean {
                    Status::Dead
                } else {
                    Status::Failed
                });
                signals.stop_requested().await;
                return;
            }
        }
    }
}

/// One start of the unit, until it ends or is stopped.
async fn attempt(
    ctx: &Context,
    service: &Service,
    signals: &mut Signals,
    reporter: &Reporter,
) -> Attempt {
    let stop_timeout = ctx.stop_timeout.unwrap_or(service.timeout_stop);
    let kind = format!("start {}", ctx.name);
    reporter.set(Status::StartPre);
    let env = match env::load(&service.env_files) {
        Ok(env) => env,
        Err(e) => {
            ctx.problems.report(&kind, format!("{}: {e}", ctx.name));
            return Attempt::Ended(Exit::StartFailed);
        }
    };
    let deadline = service.timeout_start.map(|t| Instant::now() + t);
    for cmd in &service.start_pre {
        let cmd = exec::prepare(cmd, &env, &ctx.problems);
        if ctx.offline_pull
            && let Some(image) = cmd.pulled_image()
            && image_present(&cmd.program, image, &env).await
        {
            tracing::info!(unit = %ctx.name, "{image} is already here: not pulled (--offline-pull)");
            continue;
        }
        let failure = match control(ctx, &cmd, &env, deadline, stop_timeout, signals).await {
            Control::Stopped => return Attempt::Stopped,
            Control::Done(status) if status.success() || cmd.ignore_failure => continue,
            Control::CannotRun(_) if cmd.ignore_failure => continue,
            Control::Done(status) => format!("{status}"),
            Control::CannotRun(e) => format!("cannot run: {e}"),
            Control::TimedOut => "TimeoutStartSec passed".to_string(),
        };
        ctx.problems.report(
            &kind,
            format!(
                "{}: ExecStartPre {} failed: {failure}",
                ctx.name,
                cmd.line()
            ),
        );
        return Attempt::Ended(Exit::StartFailed);
    }
    let Some(start) = &service.start else {
        return Attempt::Ended(Exit::StartFailed);
    };
    let start = exec::prepare(start, &env, &ctx.problems);
    let mut child = match exec::spawn(&start, &env, &ctx.name) {
        Ok(child) => child,
        Err(e) => {
            ctx.problems.report(
                &kind,
                format!("{}: ExecStart {} cannot run: {e}", ctx.name, start.line()),
            );
            return Attempt::Ended(Exit::StartFailed);
        }
    };
    ctx.problems.resolved(&kind);
    reporter.set(Status::Running);
    let ended = tokio::select! {
        status = child.wait() => Some(status),
        _ = signals.stop_requested() => None,
    };
    // systemd runs ExecStop also when the main process ended by itself.
    reporter.set(Status::Stopping);
    for cmd in &service.stop {
        let cmd = exec::prepare(cmd, &env, &ctx.problems);
        let limit = Some(Instant::now() + stop_timeout);
        if let Control::Done(status) =
            control_unstoppable(ctx, &cmd, &env, limit, stop_timeout).await
            && !status.success()
            && !cmd.ignore_failure
        {
            tracing::warn!(unit = %ctx.name, "ExecStop {} failed: {status}", cmd.line());
        }
    }
    match ended {
        Some(status) => {
            let exit = status.map_or(Exit::StartFailed, exec::exit_of);
            tracing::info!(unit = %ctx.name, "main process ended: {exit:?}");
            Attempt::Ended(exit)
        }
        None => {
            exec::terminate(&mut child, stop_timeout).await;
            Attempt::Stopped
        }
    }
}

/// Runs a control command to its end, its deadline, or a stop.
async fn control(
    ctx: &Context,
    cmd: &Prepared,
    env: &BTreeMap<String, String>,
    deadline: Option<Instant>,
    stop_timeout: Duration,
    signals: &mut Signals,
) -> Control {
    let mut child = match exec::spawn(cmd, env, &ctx.name) {
        Ok(child) => child,
        Err(e) => return Control::CannotRun(e),
    };
    let timeout = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Control::Done(status),
            Err(e) => Control::CannotRun(e),
        },
        _ = timeout => {
            exec::terminate(&mut child, stop_timeout).await;
            Control::TimedOut
        }
        _ = signals.stop_requested() => {
            exec::terminate(&mut child, stop_timeout).await;
            Control::Stopped
        }
    }
}

/// A control command that a stop does not interrupt (`ExecStop`).
async fn control_unstoppable(
    ctx: &Context,
    cmd: &Prepared,
    env: &BTreeMap<String, String>,
    deadline: Option<Instant>,
    stop_timeout: Duration,
) -> Control {
    let mut child = match exec::spawn(cmd, env, &ctx.name) {
        Ok(child) => child,
        Err(e) => return Control::CannotRun(e),
    };
    let at = deadline.unwrap_or_else(|| Instant::now() + stop_timeout);
    match tokio::time::timeout_at(at, child.wait()).await {
        Ok(Ok(status)) => Control::Done(status),
        Ok(Err(e)) => Control::CannotRun(e),
        Err(_) => {
            exec::terminate(&mut child, stop_timeout).await;
            Control::TimedOut
        }
    }
}

/// Whether the Docker engine behind `docker` (the unit's program) already
/// has `image`.
async fn image_present(docker: &str, image: &str, env: &BTreeMap<String, String>) -> bool {
    let mut cmd = tokio::process::Command::new(docker);
    cmd.args(["image", "inspect", "--format", "{{.Id}}", image])
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    matches!(
        tokio::time::timeout(Duration::from_secs(30), cmd.status()).await,
        Ok(Ok(status)) if status.success()
    )
}
