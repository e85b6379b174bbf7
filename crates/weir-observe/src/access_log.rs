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
    /// Reopen the file (log rotation moved it away).
    Reopen,
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
        let mut out = Some(out);
        Self::spawn(
            move || {
                out.take()
                    .map(|w| Box::new(w) as Box<dyn Write + Send>)
                    .ok_or_else(|| std::io::Error::other("writer already in use"))
            },
            false,
        )
    }

    /// JSON lines appended to the file at `path` (created if missing). [`AccessLog::reopen`]
    /// opens it again by name, for log rotation (SIGUSR1).
    pub fn to_file(path: &std::path::Path) -> std::io::Result<Self> {
        let path = path.to_owned();
        let open = move || -> std::io::Result<Box<dyn Write + Send>> {
            Ok(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?,
            ))
        };
        // Fail at start, not in the writer thread, when the file cannot be opened.
        open()?;
        Ok(Self::spawn(open, true))
    }

    fn spawn<F>(open: F, reopenable: bool) -> Self
    where
        F: FnMut() -> std::io::Result<Box<dyn Write + Send>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || writer_loop(rx, open, reopenable));
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

    /// Reopens the log file by name (after logrotate moved it); nothing for stdout.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen);
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

fn writer_loop<F>(rx: Receiver<Msg>, mut open: F, reopenable: bool)
where
    F: FnMut() -> std::io::Result<Box<dyn Write + Send>>,
{
    let Ok(first) = open() else { return };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, first);
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
                Msg::Reopen if reopenable => {
                    let _ = out.flush();
                    match open() {
                        Ok(fresh) => out = std::io::BufWriter::with_capacity(64 * 1024, fresh),
                        // Keep writing to the old file rather than lose lines.
                        Err(e) => eprintln!("weir: cannot reopen the access log: {e}"),
                    }
                }
                Msg::Reopen => {}
            }
            pending = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord<'static> {
        RequestRecord {
            ts: "2026-11-22T10:00:00.000Z".into(),
            request_id: "r",
            listener: "main",
            client_ip: "127.0.0.1".into(),
            proto: "HTTP/1.1",
            method: "GET",
            host: None,
            path: "/",
            query: None,
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 1.0,
            route: None,
            upstream: None,
            endpoint: None,
            upstream_connect_ms: None,
            upstream_first_byte_ms: None,
            tries: 0,
            forward: None,
            error: None,
            completed: true,
        }
    }

    #[test]
    fn a_rotated_file_is_reopened_by_name() {
        let dir = std::env::temp_dir().join(format!("weir-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::to_file(&path).expect("open");
        log.log(&record());
        log.flush();
        // logrotate: move the file away, then signal.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        log.log(&record());
        log.reopen();
        log.log(&record());
        log.flush();
        let old = std::fs::read_to_string(&rotated).expect("rotated");
        let new = std::fs::read_to_string(&path).expect("new");
        assert_eq!(
            old.lines().count(),
            2,
            "lines before the reopen stay in the old file"
        );
        assert_eq!(new.lines().count(), 1, "lines after it go to the new file");
        assert!(AccessLog::to_file(&dir.join("missing/dir/log")).is_err());
    }
}
