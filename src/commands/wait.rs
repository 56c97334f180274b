//! `--wait`: follow a rollout through `/kaylee/status/<name>` until the
//! leader reports every replica running on what was just written, an error,
//! or the timeout. A bar per unit on a terminal, plain lines otherwise.

use super::{Exit, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kaylee_controllers::client::{ClientError, KayleeClient};
use kaylee_controllers::units::UnitStatus;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(500);

/// A write to follow: the status must answer at least these revisions.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub spec_revision: i64,
    pub restart_revision: i64,
}

#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// No status answers the write yet (no leader, or it has not got to it).
    Pending(Option<String>),
    Rolling(UnitStatus),
    Done(UnitStatus),
    Failed(String),
}

impl Progress {
    fn finished(&self) -> bool {
        matches!(self, Progress::Done(_) | Progress::Failed(_))
    }
}

fn assess(target: &Target, status: Option<&UnitStatus>) -> Progress {
    let Some(s) = status.filter(|s| {
        s.spec_revision >= target.spec_revision && s.restart_revision >= target.restart_revision
    }) else {
        return Progress::Pending(None);
    };
    match &s.error {
        Some(e) => Progress::Failed(e.clone()),
        None if s.is_done() => Progress::Done(s.clone()),
        None => Progress::Rolling(s.clone()),
    }
}

fn describe(p: &Progress) -> String {
    match p {
        Progress::Pending(None) => "waiting for the leader to pick up the change".into(),
        Progress::Pending(Some(e)) => format!("cannot read the status: {e}"),
        Progress::Rolling(s) | Progress::Done(s) => {
            let mut line = format!("{}/{} running, {}", s.running, s.desired, s.phase);
            if let Some(w) = &s.waiting_for {
                line.push_str(&format!(", waiting for {w}"));
            }
            line
        }
        Progress::Failed(e) => format!("error: {e}"),
    }
}

/// How progress is shown: bars on a terminal, a line per change otherwise.
enum Display {
    Bars(MultiProgress, Vec<ProgressBar>),
    Lines(Vec<String>),
}

impl Display {
    fn new(targets: &[Target]) -> Self {
        if !std::io::stdout().is_terminal() {
            return Display::Lines(vec![String::new(); targets.len()]);
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:24}] {pos}/{len} running  {spinner} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let width = targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let bars = targets
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(format!("{:width$}", t.name));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .collect();
        Display::Bars(multi, bars)
    }

    fn show(&mut self, i: usize, name: &str, p: &Progress) -> Result {
        match self {
            Display::Lines(last) => {
                let line = format!("{name}: {}", describe(p));
                if last[i] != line {
                    crate::outln!("{line}")?;
                    last[i] = line;
                }
            }
            Display::Bars(_, bars) => {
                let bar = &bars[i];
                match p {
                    Progress::Rolling(s) | Progress::Done(s) => {
                        bar.set_length(u64::from(s.desired));
                        bar.set_position(u64::from(s.running.min(s.desired)));
                        let mut msg = s.phase.clone();
                        if let Some(w) = &s.waiting_for {
                            msg.push_str(&format!(": {w}"));
                        }
                        bar.set_message(msg);
                    }
                    other => bar.set_message(describe(other)),
                }
                match p {
                    Progress::Done(_) => bar.finish_with_message("rolled out"),
                    Progress::Failed(_) => bar.abandon(),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn finish(self) {
        if let Display::Bars(multi, bars) = self {
            for bar in bars.iter().filter(|b| !b.is_finished()) {
                bar.abandon();
            }
            let _ = multi.clear();
        }
    }
}

/// Waits for every target; exit 1 with every error, or with what each
/// unfinished unit was waiting for when `timeout` ran out.
pub async fn follow(client: &KayleeClient, targets: &[Target], timeout: Duration) -> Result {
    let deadline = Instant::now() + timeout;
    let mut display = Display::new(targets);
    let mut progress = vec![Progress::Pending(None); targets.len()];
    // On the deadline, `progress` holds what each unit was last seen doing.
    let polled =
        tokio::time::timeout_at(deadline, poll(client, targets, &mut progress, &mut display)).await;
    display.finish();
    if let Ok(Err(e)) = polled {
        return Err(e);
    }
    for (t, p) in targets.iter().zip(&progress) {
        if let Progress::Done(s) = p {
            crate::outln!(
                "{}: rolled out, {}/{} running",
                t.name,
                s.running,
                s.desired
            )?;
        }
    }
    let failures: Vec<String> = targets
        .iter()
        .zip(&progress)
        .filter(|(_, p)| !matches!(p, Progress::Done(_)))
        .map(|(t, p)| match p {
            Progress::Failed(e) => format!("{}: {e}", t.name),
            other => format!(
                "timed out after {} waiting for {}: {}",
                humantime::format_duration(timeout),
                t.name,
                describe(other)
            ),
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Exit::runtime(failures.join("\n")))
    }
}

async fn poll(
    client: &KayleeClient,
    targets: &[Target],
    progress: &mut [Progress],
    display: &mut Display,
) -> Result {
    loop {
        for (i, t) in targets.iter().enumerate() {
            if progress[i].finished() {
                continue;
            }
            progress[i] = match client.get(&t.name).await {
                Ok(view) => assess(t, view.status.as_ref()),
                Err(ClientError::NotFound(_)) => {
                    Progress::Failed("the unit was removed while rolling out".into())
                }
                // etcd may come back before the timeout; say what failed.
                Err(e) => Progress::Pending(Some(e.to_string())),
            };
            display.show(i, &t.name, &progress[i])?;
        }
        if progress.iter().all(Progress::finished) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: "countly".into(),
            spec_revision: 10,
            restart_revision: 0,
        }
    }

    fn status(spec_revision: i64, running: u32, phase: &str) -> UnitStatus {
        UnitStatus {
            spec_hash: "4f9a1c".into(),
            spec_revision,
            desired: 4,
            created: 4,
            updated: 4,
            running,
            phase: phase.into(),
            ..UnitStatus::default()
        }
    }

    #[test]
    fn an_older_status_does_not_answer_the_write() {
        assert_eq!(assess(&target(), None), Progress::Pending(None));
        let old = status(9, 4, "converged");
        assert_eq!(assess(&target(), Some(&old)), Progress::Pending(None));
        let restarted = Target {
            restart_revision: 12,
            ..target()
        };
        let before_restart = status(10, 4, "converged");
        assert_eq!(
            assess(&restarted, Some(&before_restart)),
            Progress::Pending(None)
        );
    }

    #[test]
    fn done_only_when_converged_and_running() {
        let s = status(10, 2, "converged");
        assert!(matches!(assess(&target(), Some(&s)), Progress::Rolling(_)));
        let s = status(11, 4, "converged");
        assert!(matches!(assess(&target(), Some(&s)), Progress::Done(_)));
    }

    #[test]
    fn an_error_in_the_status_fails() {
        let s = UnitStatus {
            error: Some("spec.image: must not be empty".into()),
            ..status(10, 0, "invalid")
        };
        assert_eq!(
            assess(&target(), Some(&s)),
            Progress::Failed("spec.image: must not be empty".into())
        );
    }
}
