//! A unit's state as systemd names it (load, active and sub state), which
//! fleet's agents publish.

/// Where a unit is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `activating/start-pre`: `ExecStartPre` commands running.
    StartPre,
    /// `activating/start`: starting, nothing known yet (a global unit whose
    /// owner on this host runs another version).
    Start,
    /// `active/running`.
    Running,
    /// `activating/auto-restart`: waiting `RestartSec` before starting again.
    AutoRestart,
    /// `deactivating/stop`: `ExecStop` commands running.
    Stopping,
    /// `inactive/dead`.
    Dead,
    /// `failed/failed`.
    Failed,
    /// loadState `error`, `inactive/dead`: systemd refused the unit file
    /// (no `ExecStart=`).
    LoadError,
}

impl Status {
    /// systemd's `LoadState`.
    pub fn load(self) -> &'static str {
        match self {
            Status::LoadError => "error",
            _ => "loaded",
        }
    }

    /// systemd's `ActiveState`.
    pub fn active(self) -> &'static str {
        match self {
            Status::StartPre | Status::Start | Status::AutoRestart => "activating",
            Status::Running => "active",
            Status::Stopping => "deactivating",
            Status::Dead | Status::LoadError => "inactive",
            Status::Failed => "failed",
        }
    }

    /// systemd's `SubState`.
    pub fn sub(self) -> &'static str {
        match self {
            Status::StartPre => "start-pre",
            Status::Start => "start",
            Status::Running => "running",
            Status::AutoRestart => "auto-restart",
            Status::Stopping => "stop",
            Status::Dead | Status::LoadError => "dead",
            Status::Failed => "failed",
        }
    }

    /// The status a `load/active/sub` triple names, e.g. from another
    /// process's state file.
    pub fn parse(load: &str, active: &str, sub: &str) -> Option<Status> {
        const ALL: [Status; 8] = [
            Status::StartPre,
            Status::Start,
            Status::Running,
            Status::AutoRestart,
            Status::Stopping,
            Status::Dead,
            Status::Failed,
            Status::LoadError,
        ];
        ALL.into_iter()
            .find(|s| s.load() == load && s.active() == active && s.sub() == sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back() {
        for s in [Status::Running, Status::AutoRestart, Status::LoadError] {
            assert_eq!(Status::parse(s.load(), s.active(), s.sub()), Some(s));
        }
        assert_eq!(Status::parse("loaded", "active", "exited"), None);
    }
}
