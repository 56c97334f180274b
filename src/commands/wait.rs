//! `--wait`: follow a rollout through `/kaylee/status/<name>` until the
//! leader reports every replica running on what was just written, an error,
//! or the timeout. A bar per unit on a terminal, plain lines otherwise.

use super::{Exit, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kaylee_controllers::client::{ClientError, KayleeClient};
use kaylee_controllers::units::UnitStatus;
use kaylee_controllers::units::decide::Condition;
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
    if let Some(e) = &s.error {
        return Progress::Failed(format!("invalid: {e}"));
    }
    if let Some(r) = &s.rolled_back
        && target.spec_revision > 0
        && r.failed_spec_revision >= target.spec_revision
    {
        return Progress::Failed(format!(
            "rolled back: revision {} failed and revision {} was put back ({})",
            r.from_revision, r.to_revision, r.reason
        ));
    }
    if s.condition == Some(Condition::Failed) {
        return Progress::Failed(failure(s));
    }
    if s.is_done() {
        Progress::Done(s.clone())
    } else {
        Progress::Rolling(s.clone())
    }
}

/// A failed unit, and every replica that does not serve with why.
fn failure(s: &UnitStatus) -> String {
    // A unit fails for one of two reasons; say which.
    let why = if s.available == 0 {
        "no replica serves"
    } else {
        "its rollout stopped: no new replica became available within its progress deadline"
    };
    let mut out = format!("failed: {}/{} available; {why}", s.available, s.desired);
    for u in &s.unavailable {
        out.push_str(&format!("\n  {}", u.unit));
        if !u.machine.is_empty() {
            out.push_str(&format!(" on {}", u.machine));
        }
        out.push_str(&format!(": {}", u.reason));
    }
    if s.more_unavailable > 0 {
        out.push_str(&format!("\n  and {} more", s.more_unavailable));
    }
    out
}

fn describe(p: &Progress) -> String {
    match p {
        Progress::Pending(None) => "waiting for the leader to pick up the change".into(),
        Progress::Pending(Some(e)) => format!("cannot read the status: {e}"),
        Progress::Rolling(s) | Progress::Done(s) => {
            let mut line = format!("{}/{} available, {}", s.available, s.desired, activity(s));
            if let Some(w) = &s.waiting_for {
                line.push_str(&format!(", waiting for {w}"));
            }
            if let Some(u) = s.unavailable.first() {
                line.push_str(&format!(" ({})", u.reason));
            }
            line
        }
        Progress::Failed(e) => e.clone(),
    }
}

/// The condition and what Kaylee writes: `progressing, rolling-update`.
fn activity(s: &UnitStatus) -> String {
    match s.condition {
        Some(c) => format!("{c}, {}", s.phase),
        None => s.phase.to_string(),
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
            "{prefix:.bold} [{bar:24}] {pos}/{len} available  {spinner} {msg}",
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
            // A failure is the command's error: stderr has it, once.
            Display::Lines(_) if matches!(p, Progress::Failed(_)) => {}
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
                        bar.set_position(u64::from(s.available.min(s.desired)));
                        let mut msg = activity(s);
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
                "{}: rolled out, {}/{} available",
                t.name,
                s.available,
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
    use kaylee_controllers::units::availability::Unavailable;
    use kaylee_controllers::units::decide::Phase;
    use kaylee_controllers::units::status::RolledBack;

    fn target() -> Target {
        Target {
            name: "countly".into(),
            spec_revision: 10,
            restart_revision: 0,
        }
    }

    fn status(spec_revision: i64, available: u32, phase: Phase) -> UnitStatus {
        UnitStatus {
            spec_hash: "4f9a1c".into(),
            spec_revision,
            desired: 4,
            created: 4,
            updated: 4,
            running: available,
            available,
            condition: Some(if available == 4 {
                Condition::Available
            } else {
                Condition::Progressing
            }),
            phase,
            ..UnitStatus::default()
        }
    }

    #[test]
    fn an_older_status_does_not_answer_the_write() {
        assert_eq!(assess(&target(), None), Progress::Pending(None));
        let old = status(9, 4, Phase::Converged);
        assert_eq!(assess(&target(), Some(&old)), Progress::Pending(None));
        let restarted = Target {
            restart_revision: 12,
            ..target()
        };
        let before_restart = status(10, 4, Phase::Converged);
        assert_eq!(
            assess(&restarted, Some(&before_restart)),
            Progress::Pending(None)
        );
    }

    #[test]
    fn done_only_when_every_replica_is_available() {
        let s = status(10, 2, Phase::Converged);
        assert!(matches!(assess(&target(), Some(&s)), Progress::Rolling(_)));
        let s = status(11, 4, Phase::Converged);
        assert!(matches!(assess(&target(), Some(&s)), Progress::Done(_)));
        let s = status(11, 4, Phase::RollingUpdate);
        assert!(
            matches!(assess(&target(), Some(&s)), Progress::Rolling(_)),
            "old replicas are still to go"
        );
    }

    #[test]
    fn an_error_in_the_status_fails() {
        let s = UnitStatus {
            error: Some("spec.image: must not be empty".into()),
            ..status(10, 0, Phase::Invalid)
        };
        assert_eq!(
            assess(&target(), Some(&s)),
            Progress::Failed("invalid: spec.image: must not be empty".into())
        );
    }

    #[test]
    fn a_failed_rollout_fails_with_every_reason() {
        let s = UnitStatus {
            condition: Some(Condition::Failed),
            unavailable: vec![Unavailable {
                unit: "k:web:1.service".into(),
                machine: "m1".into(),
                reason: "activating/auto-restart on m1".into(),
            }],
            ..status(10, 3, Phase::RollingUpdate)
        };
        let Progress::Failed(why) = assess(&target(), Some(&s)) else {
            panic!("not failed");
        };
        assert!(
            why.starts_with("failed: 3/4 available; its rollout stopped: no new replica"),
            "{why}"
        );
        assert!(
            why.contains("k:web:1.service on m1: activating/auto-restart on m1"),
            "{why}"
        );
        let down = UnitStatus { available: 0, ..s };
        let Progress::Failed(why) = assess(&target(), Some(&down)) else {
            panic!("not failed");
        };
        assert!(
            why.starts_with("failed: 0/4 available; no replica serves"),
            "{why}"
        );
    }

    #[test]
    fn a_rollback_of_the_written_revision_fails_the_wait() {
        let s = UnitStatus {
            rolled_back: Some(RolledBack {
                from_revision: 2,
                to_revision: 1,
                failed_spec_revision: 10,
                spec_revision: 14,
                reason: "no new replica became available".into(),
            }),
            ..status(14, 4, Phase::Converged)
        };
        let Progress::Failed(why) = assess(&target(), Some(&s)) else {
            panic!("not failed");
        };
        assert!(why.starts_with("rolled back: revision 2 failed"), "{why}");
        let later = Target {
            spec_revision: 15,
            ..target()
        };
        assert_eq!(assess(&later, Some(&s)), Progress::Pending(None));
    }
}
