//! Logs: tracing, `RUST_LOG` honoured, human or JSON lines on stderr.
//!
//! The server hands its lines to a thread of their own through a bounded
//! buffer: the runtime (one thread on a small machine) must never wait on a
//! slow or stuck stderr (journald, a full pipe), or the lease it keeps alive
//! would lapse. When the buffer is full, lines are dropped and counted
//! (`kaylee_log_lines_dropped_total`) rather than waited for.

use crate::cli::LogFormat;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines the server may have waiting for stderr.
const BUFFERED_LINES: usize = 16_384;
/// How long exit waits for waiting lines to be written.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

/// Logs of a CLI command: straight to stderr, at `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    install(format, default_level, std::io::stderr);
}

/// Logs of the server, through the buffer; the guard writes what is left
/// when dropped.
pub fn init_server(format: LogFormat) -> LogGuard {
    let (writer, guard) = Background::spawn(std::io::stderr(), BUFFERED_LINES);
    install(format, "info", writer);
    guard
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

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// A `MakeWriter` whose lines go to a thread that writes them to `sink`.
#[derive(Clone)]
struct Background {
    lines: SyncSender<Message>,
}

/// Waits, when dropped, until the lines logged so far are written (at
/// most [`FLUSH_ON_EXIT`], in case the sink is stuck).
pub struct LogGuard {
    lines: SyncSender<Message>,
}

impl Background {
    fn spawn<S: Write + Send + 'static>(sink: S, capacity: usize) -> (Background, LogGuard) {
        let (lines, rx) = sync_channel::<Message>(capacity);
        // Without the thread, lines are dropped (counted), never blocked on.
        let _ = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || drain(rx, sink));
        let guard = LogGuard {
            lines: lines.clone(),
        };
        (Background { lines }, guard)
    }
}

fn drain<S: Write>(rx: Receiver<Message>, mut sink: S) {
    for message in rx {
        match message {
            // Nowhere to report a failed log write.
            Message::Line(line) => {
                let _ = sink.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_ON_EXIT;
        let (done, flushed) = sync_channel(1);
        let mut flush = Message::Flush(done);
        loop {
            match self.lines.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    flush = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = flushed.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// One event's formatted line (the fmt layer writes each event through
/// one writer), sent when the writer drops.
struct Line {
    buf: Vec<u8>,
    lines: SyncSender<Message>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self
            .lines
            .try_send(Message::Line(std::mem::take(&mut self.buf)))
        {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("kaylee_log_lines_dropped_total").increment(1);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Background {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::new(),
            lines: self.lines.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
        let (writer, guard) = Background::spawn(sink, 4);
        // The sink is stuck: every line would block a direct writer forever.
        for i in 0..20u8 {
            let mut line = writer.make_writer();
            let _ = line.write_all(&[b'a' + i, b'\n']);
        }
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
        assert_eq!(written[0], b"a\n", "in order, from the first");
    }

    #[test]
    fn every_line_is_written_when_the_sink_keeps_up() {
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
        let (writer, guard) = Background::spawn(Shared(written.clone()), 1024);
        for i in 0..100 {
            let mut line = writer.make_writer();
            let _ = writeln!(line, "line {i}");
        }
        drop(writer);
        drop(guard);
        let text = written.lock().map(|w| w.clone()).unwrap_or_default();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&text), expected);
    }
}
