//! A global unit's one container per Docker engine: every stand-in process
//! on a host that should run global unit `<name>` tries the same lock file;
//! the holder runs it and writes its state beside the lock, the others
//! report that state for their machines. The kernel drops the lock of a
//! process that dies, so another one takes over (its `ExecStartPre`s kill
//! and remove the stale container).

use crate::records::hex;
use crate::status::Status;
use kaylee_controllers::fleet::records::unit_hash;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Where one global unit's lock and state live.
pub struct SharedSlot {
    lock: PathBuf,
    state: PathBuf,
}

/// This process runs the unit for the host while this is held.
pub struct Owned {
    _lock: Flock<File>,
    state: PathBuf,
}

impl SharedSlot {
    /// The slot of unit `name` on this host's Docker engine (`DOCKER_HOST`,
    /// so stand-ins on different engines never wait for each other).
    pub fn new(dir: &Path, name: &str) -> SharedSlot {
        let engine = std::env::var("DOCKER_HOST").unwrap_or_default();
        let tag = hex(&unit_hash(&engine)[..4]);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.:@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        SharedSlot {
            lock: dir.join(format!("{safe}.{tag}.lock")),
            state: dir.join(format!("{safe}.{tag}.state")),
        }
    }

    /// Takes the lock if no other process holds it.
    pub fn try_own(&self) -> io::Result<Option<Owned>> {
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Owned {
                _lock: lock,
                state: self.state.clone(),
            })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io::Error::from(e)),
        }
    }

    /// The unit hash and state the holder last wrote.
    pub fn owner_status(&self) -> Option<(String, Status)> {
        let text = std::fs::read_to_string(&self.state).ok()?;
        let mut words = text.split_whitespace();
        let hash = words.next()?.to_string();
        let status = Status::parse(words.next()?, words.next()?, words.next()?)?;
        Some((hash, status))
    }
}

impl Owned {
    /// Writes the state the other processes report (replaced whole, so a
    /// reader never sees half of it).
    pub fn publish(&self, hash: &str, status: Status) {
        let tmp = self
            .state
            .with_extension(format!("state.{}", std::process::id()));
        let line = format!(
            "{hash} {} {} {}\n",
            status.load(),
            status.active(),
            status.sub()
        );
        let written = std::fs::write(&tmp, line).and_then(|()| std::fs::rename(&tmp, &self.state));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", self.state.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_and_the_others_read_its_state() {
        let dir = std::env::temp_dir().join(format!("fleet-standin-test-{}", std::process::id()));
        let slot = SharedSlot::new(&dir, "k:g:1:2:1.service");
        let other = SharedSlot::new(&dir, "k:g:1:2:1.service");
        let owned = slot.try_own().expect("lock").expect("free");
        assert!(other.try_own().expect("lock").is_none(), "held");
        owned.publish("abc", Status::Running);
        assert_eq!(other.owner_status(), Some(("abc".into(), Status::Running)));
        drop(owned);
        assert!(other.try_own().expect("lock").is_some(), "released");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
