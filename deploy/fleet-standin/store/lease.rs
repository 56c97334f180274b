//! fleet's engine lease (`lease/engine-leader`): only its holder
//! schedules. On v2 as fleet keeps it (created when free, renewed while it
//! still holds this engine's value); on v3 a key on a lease of its own.

use super::v2::{self, Opts, code};
use super::{Backend, Store, StoreError};
use std::time::Duration;

impl Store {
    /// Takes or keeps fleet's engine lease at `key` (`value` names this
    /// engine) for `ttl`; whether this engine holds it.
    pub async fn engine_lease(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let abs = self.abs(key);
        match &self.backend {
            Backend::V2(c) => {
                // As fleet: create it when free; renew it (same value) when
                // ours; otherwise another engine leads.
                let held = c.get(&abs).await?;
                let opts = match held.as_deref() {
                    None => Opts {
                        ttl: Some(ttl),
                        prev_exist: Some(false),
                        ..Opts::default()
                    },
                    Some(v) if v == value => Opts {
                        ttl: Some(ttl),
                        prev_value: Some(value),
                        ..Opts::default()
                    },
                    Some(_) => return Ok(false),
                };
                match c.set(&abs, value, &opts).await? {
                    Ok(_) => Ok(true),
                    Err(f)
                        if [code::NODE_EXIST, code::COMPARE_FAILED, code::KEY_NOT_FOUND]
                            .contains(&f.code) =>
                    {
                        Ok(false)
                    }
                    Err(f) => Err(v2::refused("PUT", &abs, &f)),
                }
            }
            Backend::V3(c) => {
                let mut r = self.remembered.lock().await;
                if let Some(id) = r.engine_lease
                    && !c.keep_alive(id).await?
                {
                    r.engine_lease = None;
                }
                let lease = match r.engine_lease {
                    Some(id) => id,
                    None => {
                        let id = c.grant(ttl).await?;
                        r.engine_lease = Some(id);
                        id
                    }
                };
                Ok(match c.create_or_get(&abs, value, lease).await? {
                    None => true,
                    Some((held, held_lease)) => held == value && held_lease == lease,
                })
            }
        }
    }

    /// Gives the engine lease up if this engine (`value`) holds it.
    pub async fn release_engine_lease(&self, key: &str, value: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::V2(_) => self.delete_if(key, value).await.map(|_| ()),
            Backend::V3(c) => {
                let mut r = self.remembered.lock().await;
                match r.engine_lease.take() {
                    Some(id) => c.revoke(id).await,
                    None => Ok(()),
                }
            }
        }
    }
}
