//! Logs: tracing, `RUST_LOG` honoured, human or JSON lines on stderr.
//!
//! The server hands its lines to a thread of their own through a bounded
//! buffer (`tracing-appender`'s non-blocking writer, lossy): the runtime
//! (one thread on a small machine) must never wait on a slow or stuck
//! stderr (journald, a full pipe), or the lease it keeps alive would lapse.
//! When the buffer is full, lines are dropped and counted rather than
//! waited for; `/metrics` reports the count as
//! `kaylee_log_lines_dropped_total` (see [`dropped_lines`]).

use crate::cli::LogFormat;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines the server may have waiting for stderr.
const BUFFERED_LINES: usize = 16_384;

/// The server writer's count of dropped lines, once the server has one.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Logs of a CLI command: straight to stderr, at `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    install(format, default_level, std::io::stderr);
}

/// Logs of the server, through the buffer. Keep the guard to the end: when
/// dropped it waits for the lines logged so far to be written (up to 0.1 s
/// to queue its stop behind a full buffer, then up to 1 s for the writes;
/// the limits are tracing-appender's).
pub fn init_server(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = buffered(std::io::stderr(), BUFFERED_LINES);
    // Only one server per process; a second counter would count nothing.
    let _ = DROPPED.set(writer.error_counter());
    install(format, "info", writer);
    guard
}

/// Lines the server dropped because stderr did not keep up (0 outside a
/// server). Read when `/metrics` is rendered.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// A writer whose lines (one per event: the fmt layer writes each event in
/// one call) wait in a buffer of `lines` for a thread that writes them to
/// `sink`, in order; a line that finds the buffer full is dropped, never
/// waited for.
fn buffered<S: std::io::Write + Send + 'static>(
    sink: S,
    lines: usize,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("log")
        .finish(sink)
}

fn install<W>(format: LogFormat, default_level: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (only possible in tests) is harmless to ignore.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::{Receiver, sync_channel};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A sink that holds every write until `open` is sent, then records it.
    struct Gated {
        open: Arc<Mutex<Receiver<()>>>,
        written: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(open) = self.open.lock() {
                let _ = open.recv();
            }
            if let Ok(mut w) = self.written.lock() {
                w.push(bytes.to_vec());
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_never_holds_up_a_logger_and_lines_beyond_the_buffer_are_dropped() {
        let (open_tx, open_rx) = sync_channel::<()>(0);
        let written: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = Gated {
            open: Arc::new(Mutex::new(open_rx)),
            written: written.clone(),
        };
        let (writer, guard) = buffered(sink, 4);
        let dropped = writer.error_counter();
        // The sink is stuck: every line would block a direct writer forever.
        let start = Instant::now();
        for i in 0..20u8 {
            let _ = writer.make_writer().write_all(&[b'a' + i, b'\n']);
        }
        assert!(start.elapsed() < Duration::from_secs(1), "never waited");
        // Unstick it for as many writes as it may get.
        std::thread::spawn(move || while open_tx.send(()).is_ok() {});
        drop(writer);
        drop(guard);
        let written = written.lock().map(|w| w.clone()).unwrap_or_default();
        // The buffer's 4, and perhaps 1 the thread had taken when it stuck.
        assert!(
            (4..=5).contains(&written.len()),
            "{} lines written",
            written.len()
        );
        assert_eq!(
            written.len() + dropped.dropped_lines(),
            20,
            "the rest counted"
        );
        assert_eq!(written[0], b"a\n", "in order, from the first");
    }

    #[test]
    fn every_line_is_written_in_order_when_the_sink_keeps_up() {
        let written: Arc<Mutex<Vec<u8>>> = Arc::default();
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut w) = self.0.lock() {
                    w.extend_from_slice(bytes);
                }
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (writer, guard) = buffered(Shared(written.clone()), 1024);
        for i in 0..100 {
            let _ = writeln!(writer.make_writer(), "line {i}");
        }
        assert_eq!(writer.error_counter().dropped_lines(), 0);
        drop(writer);
        drop(guard);
        let text = written.lock().map(|w| w.clone()).unwrap_or_default();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&text), expected);
    }
}
