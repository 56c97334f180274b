//! Coalesces the writes of concurrent reconciles into as few etcd
//! transactions as the size limits allow. While one transaction is in
//! flight, the next requests queue up and the next batch is built from
//! them, so batches grow exactly when load does, an idle controller writes
//! at once, and etcd does not wait on the writer between two transactions.

use std::future::Future;
use std::task::Poll;
use tokio::sync::{mpsc, oneshot};

/// What [`Coalescer::submit`] returns when no commit will answer: the
/// writer task is gone (its runtime is shutting down). A coalescer's error
/// type converts from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writer stopped")]
pub struct WriterStopped;

type Reply<E> = oneshot::Sender<Result<(), E>>;
type Request<T, E> = (Vec<T>, Reply<E>);

/// A request, or what is left of one after its first items went out.
struct Held<T, E> {
    items: Vec<T>,
    reply: Reply<E>,
    /// Some of its items were in an earlier batch.
    split: bool,
}

impl<T, E> Held<T, E> {
    fn whole((items, reply): Request<T, E>) -> Held<T, E> {
        Held {
            items,
            reply,
            split: false,
        }
    }
}

/// One transaction's worth of items, and who waits on it.
struct Batch<T, E> {
    items: Vec<T>,
    waiters: Vec<Reply<E>>,
    room: usize,
    weight: fn(&T) -> usize,
}

impl<T, E> Batch<T, E> {
    fn new(max_weight: usize, weight: fn(&T) -> usize) -> Batch<T, E> {
        Batch {
            items: Vec::new(),
            waiters: Vec::new(),
            room: max_weight,
            weight,
        }
    }

    fn is_full(&self) -> bool {
        self.room == 0
    }

    /// A batch of `first` and then as much of what has queued as fits;
    /// what did not fit goes to `held`.
    fn fill(
        first: Held<T, E>,
        max_weight: usize,
        weight: fn(&T) -> usize,
        held: &mut Option<Held<T, E>>,
        rx: &mut mpsc::UnboundedReceiver<Request<T, E>>,
    ) -> Batch<T, E> {
        let mut batch = Batch::new(max_weight, weight);
        let mut next = Some(first);
        while let Some(request) = next.take() {
            *held = batch.take(request);
            if held.is_some() || batch.is_full() {
                break;
            }
            next = rx.try_recv().ok().map(Held::whole);
        }
        batch
    }

    /// Takes as many of `request`'s items, in order, as there is room for
    /// (at least one into an empty batch, however heavy), so transactions
    /// go out full; what is left comes back. Its waiter waits for the
    /// batch that takes the last item.
    fn take(&mut self, mut request: Held<T, E>) -> Option<Held<T, E>> {
        let mut fits = 0;
        for item in &request.items {
            let w = (self.weight)(item);
            if w > self.room && !(self.items.is_empty() && fits == 0) {
                break;
            }
            self.room = self.room.saturating_sub(w);
            fits += 1;
        }
        if fits == request.items.len() {
            self.items.append(&mut request.items);
            self.waiters.push(request.reply);
            return None;
        }
        let rest = request.items.split_off(fits);
        self.items.append(&mut request.items);
        Some(Held {
            items: rest,
            reply: request.reply,
            split: request.split || fits > 0,
        })
    }
}

/// The handle reconciles submit their writes through; `T` is one write,
/// `E` why a batch failed, cloned to every request the batch carried.
pub struct Coalescer<T, E> {
    tx: mpsc::UnboundedSender<Request<T, E>>,
}

impl<T, E> Coalescer<T, E>
where
    T: Send + 'static,
    E: Clone + From<WriterStopped> + Send + 'static,
{
    /// Starts the writer task. `weight` says how much of a transaction an
    /// item uses (etcd operations); batches are filled to `max_weight` (or
    /// hold a single heavier item), splitting a request between two
    /// consecutive batches where it does not fit whole. Each batch goes
    /// through `prepare` (CPU: building the requests), then `commit` (the
    /// network); the next batch is prepared while one is in flight, and
    /// when a commit fails the batch prepared behind it fails too, since it
    /// may hold the rest of a request the failed one began. Items reach
    /// `commit` in the order submitted. The task ends when the coalescer
    /// drops.
    pub fn spawn<P, Prep, F, Fut>(
        max_weight: usize,
        weight: fn(&T) -> usize,
        prepare: Prep,
        commit: F,
    ) -> Coalescer<T, E>
    where
        Prep: Fn(Vec<T>) -> P + Send + 'static,
        P: Send + 'static,
        F: Fn(P) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request<T, E>>();
        tokio::spawn(async move {
            // What did not fit the last batch: it goes first in the next.
            let mut held: Option<Held<T, E>> = None;
            // A batch prepared while the one before it was in flight.
            let mut ready: Option<(P, Vec<Reply<E>>)> = None;
            loop {
                let (prepared, waiters) = match ready.take() {
                    Some(r) => r,
                    None => {
                        let first = match held.take() {
                            Some(h) => h,
                            None => match rx.recv().await {
                                Some(r) => Held::whole(r),
                                None => return,
                            },
                        };
                        let batch = Batch::fill(first, max_weight, weight, &mut held, &mut rx);
                        (prepare(batch.items), batch.waiters)
                    }
                };
                metrics::histogram!("kaylee_write_batch_requests").record(waiters.len() as f64);
                let mut in_flight = std::pin::pin!(commit(prepared));
                // One poll sends the request; its round trip is time to
                // prepare the next batch from whatever has queued.
                let early = futures::poll!(in_flight.as_mut());
                let first = held.take().or_else(|| rx.try_recv().ok().map(Held::whole));
                if let Some(first) = first {
                    let batch = Batch::fill(first, max_weight, weight, &mut held, &mut rx);
                    ready = Some((prepare(batch.items), batch.waiters));
                }
                let result = match early {
                    Poll::Ready(r) => r,
                    Poll::Pending => in_flight.await,
                };
                for w in waiters {
                    // A reconcile that gave up waiting no longer cares.
                    let _ = w.send(result.clone());
                }
                if result.is_err() {
                    let behind = ready.take().map(|(_, w)| w).unwrap_or_default();
                    let rest = held.take_if(|h| h.split).map(|h| h.reply);
                    for w in behind.into_iter().chain(rest) {
                        let _ = w.send(result.clone());
                    }
                }
            }
        });
        Coalescer { tx }
    }

    /// Writes `items`, in order, in the next batch or split between the
    /// next two (atomically only as far as the commit function makes one
    /// batch atomic), and waits for the outcome: the first failure, if any.
    pub async fn submit(&self, items: Vec<T>) -> Result<(), E> {
        if items.is_empty() {
            return Ok(());
        }
        let (reply, outcome) = oneshot::channel();
        self.tx.send((items, reply)).map_err(|_| WriterStopped)?;
        outcome.await.unwrap_or(Err(E::from(WriterStopped)))
    }
}

#[cfg(test)]
mod tests;
