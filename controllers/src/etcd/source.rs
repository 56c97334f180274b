//! An informer source over one etcd v3 key prefix.

use super::{EtcdConfig, EtcdError};
use crate::runtime::{EventStream, Item, Keep, Listing, Source, SourceError, WatchEvent};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};

/// Keys per page when listing, so a large prefix stays well within the
/// gRPC message limit. Not much smaller: etcd 3.4 collects the whole rest
/// of the range for every page (it reports the count), so a listing costs
/// about n²/PAGE.
const PAGE: i64 = 10_000;
/// tonic refuses responses over 4 MiB by default; an operator who raised
/// etcd's `--max-request-bytes` could store a value that large, and one such
/// value must not stall a whole informer. Kaylee rejects it later, by name.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Every key that starts with one prefix, read through the v3 API as an
/// informer [`Source`]: listed in pages of 10,000 keys at one revision,
/// then watched from the revision after. Keys that are not UTF-8 are
/// skipped; a compacted watch revision is [`SourceError::Compacted`], which
/// makes the informer list again.
#[derive(Clone)]
pub struct EtcdPrefix {
    client: Client,
    config: EtcdConfig,
    prefix: String,
}

impl EtcdPrefix {
    /// The keys starting with `prefix`, byte for byte: end it with `/` to
    /// mean a directory (`/kaylee/units` would also match `/kaylee/unitsx`).
    /// Nothing is sent until a list or watch.
    pub fn new(client: Client, config: EtcdConfig, prefix: impl Into<String>) -> Self {
        EtcdPrefix {
            client,
            config,
            prefix: prefix.into(),
        }
    }
}

/// The smallest key greater than every key with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Source for EtcdPrefix {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let end = prefix_end(self.prefix.as_bytes());
        let mut start = self.prefix.as_bytes().to_vec();
        let mut listing = Listing::default();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if listing.revision > 0 {
                opts = opts.with_revision(listing.revision);
            }
            let resp = self.config.timed(kv.get(start.clone(), Some(opts))).await?;
            if listing.revision == 0 {
                listing.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for item in resp.kvs() {
                // Keys that are not UTF-8 were not written by Kaylee or fleet.
                if let Ok(key) = item.key_str()
                    && keep(key, item.value())
                {
                    listing.items.push(Item {
                        key: key.to_string(),
                        value: item.value().to_vec(),
                        revision: item.mod_revision(),
                    });
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(listing),
            }
        }
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        let mut watch = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = self
            .config
            .timed(watch.watch(self.prefix.clone(), Some(opts)))
            .await?;
        let events = futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            let item = match stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    if resp.compact_revision() > 0 {
                        Err(SourceError::Compacted)
                    } else {
                        Err(SourceError::Canceled(resp.cancel_reason().to_string()))
                    }
                }
                Ok(Some(resp)) => Ok(resp
                    .events()
                    .iter()
                    .filter_map(|e| {
                        let kv = e.kv()?;
                        let key = kv.key_str().ok()?.to_string();
                        Some(match e.event_type() {
                            EventType::Put => WatchEvent::Put {
                                key,
                                value: kv.value().to_vec(),
                                revision: kv.mod_revision(),
                            },
                            EventType::Delete => WatchEvent::Delete { key },
                        })
                    })
                    .collect()),
                Ok(None) => return None,
                Err(e) => Err(EtcdError::from(e).into()),
            };
            // After an error the stream is finished.
            let next = item.is_ok().then_some(stream);
            Some((item, next))
        });
        Ok(Box::pin(events))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
