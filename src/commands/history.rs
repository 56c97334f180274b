//! `history` and `rollback`: a unit's spec revisions, and putting one back.

use super::units::{client_error, connect};
use super::wait::{self, Target};
use super::{Exit, Result};
use crate::cli::{EtcdArgs, Output, WaitArgs};
use crate::table::Table;
use kaylee_controllers::client::KayleeClient;
use kaylee_controllers::spec;
use kaylee_controllers::units::history::Revision;

/// The unit's history, and the revision its status says is current (none
/// without a status that names one).
async fn history(client: &KayleeClient, name: &str) -> Result<(Vec<Revision>, Option<u64>)> {
    let revisions = client.history(name).await.map_err(client_error)?;
    let current = client
        .get(name)
        .await
        .ok()
        .and_then(|v| v.status)
        .map(|s| s.revision)
        .filter(|r| *r > 0);
    Ok((revisions, current))
}

pub async fn list(etcd: &EtcdArgs, name: &str, output: Output) -> Result {
    let client = connect(etcd).await?;
    let (revisions, current) = history(&client, name).await?;
    if output == crate::cli::Output::Json {
        let text = serde_json::to_string_pretty(&revisions).map_err(Exit::runtime)?;
        crate::outln!("{text}")?;
        return Ok(());
    }
    if revisions.is_empty() {
        return Err(Exit::runtime(format!(
            "no history for `{name}` (a leader records each spec it reconciles)"
        )));
    }
    let mut t = Table::new(&["REVISION", "RECORDED", "HASH", "IMAGE", "AVAILABLE", "NOTE"]);
    for r in &revisions {
        let mut notes = Vec::new();
        if Some(r.revision) == current {
            notes.push("current".to_string());
        }
        if let Some(of) = r.rollback_of {
            notes.push(format!("rollback after revision {of} failed"));
        }
        t.row(vec![
            r.revision.to_string(),
            r.recorded_at.clone(),
            r.spec_hash.clone(),
            r.image.clone(),
            match &r.available_at {
                Some(at) => format!("yes, {at}"),
                None if r.available => "yes".into(),
                None => "never".into(),
            },
            if notes.is_empty() {
                "-".into()
            } else {
                notes.join("; ")
            },
        ]);
    }
    crate::output::print(&t.render())?;
    Ok(())
}

/// The revision `rollback` goes to: the one asked for, else the newest
/// one before the current that was fully available.
fn choose(revisions: &[Revision], current: Option<u64>, to: Option<u64>) -> Result<&Revision> {
    if let Some(n) = to {
        return revisions
            .iter()
            .find(|r| r.revision == n)
            .ok_or_else(|| Exit::bad_input(format!("no revision {n} in the history")));
    }
    let before = |r: &&Revision| current.is_none_or(|c| r.revision < c);
    revisions
        .iter()
        .rev()
        .filter(before)
        .find(|r| r.available)
        .ok_or_else(|| {
            Exit::runtime(
                "no earlier revision was ever fully available; name one with --to-revision",
            )
        })
}

pub async fn rollback(etcd: &EtcdArgs, name: &str, to: Option<u64>, follow: &WaitArgs) -> Result {
    let client = connect(etcd).await?;
    let (revisions, current) = history(&client, name).await?;
    let chosen = choose(&revisions, current, to)?;
    let source = format!("history revision {} of {name}", chosen.revision);
    let unit = spec::from_json(&chosen.unit.to_string(), &source).map_err(Exit::runtime)?;
    if unit.name != name {
        return Err(Exit::runtime(format!(
            "{source} holds unit `{}`, not `{name}`",
            unit.name
        )));
    }
    let written = client.apply(&unit).await.map_err(client_error)?;
    crate::outln!(
        "{name}: rolling back to revision {} ({})",
        chosen.revision,
        chosen.image
    )?;
    if follow.wait {
        let target = Target {
            name: name.to_string(),
            spec_revision: written.revision,
            restart_revision: 0,
        };
        wait::follow(&client, &[target], follow.timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(n: u64, available: bool) -> Revision {
        let unit = spec::from_json(r#"{"name":"web","spec":{"image":"a"}}"#, "t").unwrap();
        Revision {
            available,
            ..Revision::new(n, n as i64, "abcdef", &unit)
        }
    }

    #[test]
    fn rollback_goes_to_the_newest_earlier_revision_that_served() {
        let all = [
            revision(1, true),
            revision(2, true),
            revision(3, false),
            revision(4, false),
        ];
        assert_eq!(
            choose(&all, Some(4), None).map(|r| r.revision).ok(),
            Some(2)
        );
        assert_eq!(
            choose(&all, Some(2), None).map(|r| r.revision).ok(),
            Some(1)
        );
        assert_eq!(
            choose(&all, Some(4), Some(3)).map(|r| r.revision).ok(),
            Some(3)
        );
        assert!(choose(&all, Some(4), Some(9)).is_err());
        assert!(choose(&all[2..], Some(4), None).is_err());
    }
}
