//! The access log: requests are serialized on the request's task, and written to stdout by one
//! dedicated thread, so a slow terminal or pipe never stalls request handling. When the writer
//! falls behind by more than the queue holds, lines are dropped and counted rather than block.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use crate::RequestRecord;

const QUEUE_LINES: usize = 64 * 1024;

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Where access-log lines go.
#[derive(Debug)]
pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// JSON lines to stdout.
    pub fn stdout() -> Self {
        Self::to_writer(std::io::stdout())
    }

    /// JSON lines to any writer (tests use a pipe or a file).
    pub fn to_writer<W: Write + Send + 'static>(out: W) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || writer_loop(rx, out));
        Self {
            tx: spawned.ok().map(|_| tx),
            dropped: AtomicU64::new(0),
        }
    }

    /// True when lines are written somewhere.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one record.
    pub fn log(&self, record: &RequestRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, record).is_err() {
            return;
        }
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (up to a second) until everything queued so far is written.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn writer_loop<W: Write>(rx: Receiver<Msg>, out: W) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(msg) = rx.recv() {
        let mut pending = Some(msg);
        // Drain whatever else is queued before one flush: one write syscall per burst.
        while let Some(msg) = pending.take() {
            match msg {
                Msg::Line(l) => {
                    let _ = out.write_all(&l);
                }
                Msg::Flush(ack) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                }
            }
            pending = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}
