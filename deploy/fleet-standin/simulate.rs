//! `--simulate`: units go through the states a real run would show without
//! executing anything, so tests without Docker can use the stand-in.

use crate::cli::Simulation;
use crate::glob::plain_match;
use crate::runner::{Context, Reporter, Signals, requirement_missing};
use crate::service::Service;
use crate::status::Status;

/// Runs the unit (in name only) whenever it is launched, until cancelled.
pub async fn supervise(ctx: Context, sim: Simulation, mut signals: Signals, reporter: Reporter) {
    let service = Service::of(&ctx.unit.file);
    if service.start.is_none() {
        reporter.set(Status::LoadError);
        return;
    }
    let restart_sec = ctx.restart_sec.unwrap_or(service.restart_sec);
    let failing = images(&service)
        .iter()
        .find(|image| sim.fail_images.iter().any(|g| plain_match(g, image)))
        .cloned();
    while signals.until_launched().await {
        if requirement_missing(&ctx, &service.requires) {
            reporter.set(Status::Dead);
            signals.stop_requested().await;
            continue;
        }
        loop {
            reporter.set(Status::StartPre);
            if let Some(image) = &failing {
                ctx.problems.report(
                    &format!("start {}", ctx.name),
                    format!(
                        "{}: ExecStartPre fails (simulated: {image} matches --fail-image)",
                        ctx.name
                    ),
                );
                reporter.set(Status::AutoRestart);
                if signals.sleep(restart_sec).await {
                    continue;
                }
                break;
            }
            if !signals.sleep(sim.start_delay).await {
                break;
            }
            reporter.set(Status::Running);
            signals.stop_requested().await;
            break;
        }
        reporter.set(Status::Dead);
    }
    ctx.problems.forget(&format!("start {}", ctx.name));
}

/// The unit's image: what its `docker pull` `ExecStartPre` pulls, else
/// every word of its `ExecStart` (the image is one of them).
fn images(service: &Service) -> Vec<String> {
    let pulled: Vec<String> = service
        .start_pre
        .iter()
        .filter_map(|c| match c.argv.as_slice() {
            [docker, pull, image] if docker.ends_with("docker") && pull == "pull" => {
                Some(image.clone())
            }
            _ => None,
        })
        .collect();
    if !pulled.is_empty() {
        return pulled;
    }
    service
        .start
        .as_ref()
        .map(|c| c.argv.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd;

    #[test]
    fn the_image_is_the_pulled_one() {
        let kaylee = "[Service]\nExecStartPre=/usr/bin/docker pull monder/countly:latest\n\
                      ExecStart=/usr/bin/docker run --rm --name c monder/countly:latest\n";
        assert_eq!(
            images(&Service::of(&systemd::parse(kaylee))),
            ["monder/countly:latest"]
        );
        let bare = "[Service]\nExecStart=/usr/bin/docker run --rm busybox sleep 1\n";
        assert!(images(&Service::of(&systemd::parse(bare))).contains(&"busybox".to_string()));
    }
}
