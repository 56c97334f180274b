//! The thread that reads streaming watches. etcd queues at most 100 events
//! for a v2 watcher and drops it, silently, once that queue overflows;
//! the queue drains only as fast as etcd can write to the connection, and
//! that stops once the reader leaves a few MiB unread in the sockets. The
//! server's runtime thread is busy with reconciles and writes at a cold
//! start, which left 0.7 MiB unread on Kaylee's side and 2.8 MiB on etcd's
//! and got the jobs watch dropped; catching up then took one request per
//! event for the rest of the start. A thread of its own, asleep on the
//! socket unless bytes arrive, reads each stream as it comes and hands
//! the bytes over through a channel.

use super::watch::watch_request;
use super::{V2Client, V2Error, etcd_index};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// A current-thread runtime on a thread of its own; it ends when this is
/// dropped (with the client that started it).
pub(super) struct Reader {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl Reader {
    fn start() -> Result<Reader, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the v2 watch reader: {e}"))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("v2-watch-reader".into())
            .spawn(move || {
                // Returns when the sender drops; the runtime (and every
                // stream it still reads) goes with it, on this thread.
                let _ = rt.block_on(stopped);
            })
            .map_err(|e| format!("cannot start the v2 watch reader: {e}"))?;
        Ok(Reader {
            handle,
            _stop: stop,
        })
    }
}

/// What the reader saw of one streaming watch once etcd answered it.
pub(super) struct Opened {
    pub endpoint: String,
    pub status: u16,
    /// `X-Etcd-Index` of the answer.
    pub start_index: i64,
    /// The body as it arrives; an `Err` is why the connection broke, and
    /// the channel closes when etcd ends the stream.
    pub chunks: mpsc::UnboundedReceiver<Result<Bytes, String>>,
}

impl V2Client {
    /// Opens a streaming watch of `key` from `wait_index` on the reader's
    /// thread, which then reads its body until it ends or the receiver is
    /// dropped. An answer of 300 or more is returned as its error.
    pub(super) async fn open_stream(
        &self,
        what: &str,
        key: &str,
        wait_index: Option<i64>,
    ) -> Result<Opened, V2Error> {
        let reader = self
            .inner
            .reader
            .get_or_init(Reader::start)
            .as_ref()
            .map_err(|e| V2Error::Config(e.clone()))?;
        let (me, what_owned, key) = (self.clone(), what.to_string(), key.to_string());
        let (head_tx, head_rx) = oneshot::channel();
        let (tx, chunks) = mpsc::unbounded_channel();
        reader.handle.spawn(async move {
            let req = watch_request(&key, wait_index, true);
            let (mut resp, endpoint) =
                match me.send_on(&me.inner.watch_http, &what_owned, &req).await {
                    Ok(sent) => sent,
                    Err(e) => {
                        let _ = head_tx.send(Err(e));
                        return;
                    }
                };
            let (status, start_index) = (resp.status().as_u16(), etcd_index(&resp));
            if status >= 300 {
                let _ = head_tx.send(Err(me.refused(what_owned, endpoint, resp).await));
                return;
            }
            let opened = head_tx.send(Ok(Opened {
                endpoint,
                status,
                start_index,
                chunks,
            }));
            if opened.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    chunk = resp.chunk() => match chunk {
                        Ok(Some(bytes)) => {
                            if tx.send(Ok(bytes)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    },
                    // The watch was dropped: close the connection.
                    _ = tx.closed() => return,
                }
            }
        });
        head_rx.await.unwrap_or_else(|_| {
            Err(V2Error::Unreachable {
                what: what.to_string(),
                endpoints: self.inner.endpoints_display.clone(),
                reason: "the v2 watch reader stopped".into(),
            })
        })
    }
}
