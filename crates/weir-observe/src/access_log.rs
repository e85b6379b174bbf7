//! The access log: requests are serialized on the request's task into a bounded lock-free
//! queue, and written to stdout or a file by one dedicated thread, so a slow terminal or disk
//! never stalls request handling. The writer drains the queue every 10 ms (or when it fills
//! past 4,096 lines) rather than being woken per line — a wake-up per request cost more than
//! the line itself — and writes every 100 ms or per megabyte. When it falls behind by more than the queue holds, lines are dropped and
//! counted rather than block.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use weir_config::log_format::{parse_log_format, LogSegment};

use crate::RequestRecord;

const QUEUE_LINES: usize = 64 * 1024;
/// The writer is woken early once this many lines wait.
const WAKE_AT: usize = 4096;
/// Otherwise it drains the queue this often.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// Drained lines are written out this often (or when a megabyte waits): one `write` per
/// megabyte rather than per 64 KiB halves the cost of logging to a journaling filesystem,
/// where every `write` updates the file's times.
const WRITE_EVERY: Duration = Duration::from_millis(100);
const WRITE_BUFFER: usize = 1024 * 1024;

/// How a record becomes a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object with every field, keys named as given.
    Json(weir_config::AccessLogNames),
    /// A template of text and named fields (`access_log.format`).
    Template(Vec<LogSegment>),
}

impl Default for LogFormat {
    fn default() -> Self {
        Self::Json(weir_config::AccessLogNames::Flat)
    }
}

impl LogFormat {
    /// The format named by `access_log.format` (validated: an invalid template was refused
    /// before this runs, and falls back to JSON here).
    pub fn from_config(format: &str, names: weir_config::AccessLogNames) -> Self {
        if format == "json" {
            return Self::Json(names);
        }
        parse_log_format(format).map_or(Self::Json(names), Self::Template)
    }

    /// The line for one record, newline included.
    pub fn line(&self, record: &RequestRecord<'_>) -> Option<Vec<u8>> {
        match self {
            Self::Json(names) => {
                let mut line = Vec::with_capacity(768);
                record.write_json(&mut line, *names);
                line.push(b'\n');
                Some(line)
            }
            Self::Template(segments) => {
                let mut line = String::with_capacity(160);
                for s in segments {
                    match s {
                        LogSegment::Text(t) => line.push_str(t),
                        LogSegment::Field(f) => record.write_field(f, &mut line),
                    }
                }
                // A field (a path, a host) must not be able to start a new line.
                let mut line = line.replace(['\n', '\r'], " ").into_bytes();
                line.push(b'\n');
                Some(line)
            }
        }
    }
}

/// What the writer is asked besides writing lines.
enum Control {
    /// Write everything queued, then answer.
    Flush(SyncSender<()>),
    /// Reopen the file (log rotation moved it away).
    Reopen,
}

/// What waits for the writer, in order.
enum Item {
    Line(Vec<u8>),
    Control(Control),
}

/// The queue between request tasks and the writer thread.
struct Shared {
    items: ArrayQueue<Item>,
    closed: AtomicBool,
    /// Counted by the writer thread alone (uncontended).
    written: Written,
}

/// What the writer thread wrote, and what failed to reach the file or stream.
#[derive(Debug, Default)]
struct Written {
    lines: AtomicU64,
    bytes: AtomicU64,
    /// Failed writes and flushes: a full disk, a closed pipe. Lines in a failed write are lost.
    errors: AtomicU64,
}

impl Written {
    fn result<T>(&self, r: std::io::Result<T>) {
        if r.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where access-log lines go.
pub struct AccessLog {
    inner: Option<(Arc<Shared>, std::thread::Thread)>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.enabled())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self {
            inner: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// Lines to stdout.
    pub fn stdout() -> Self {
        Self::to_writer(std::io::stdout())
    }

    /// Lines to any writer (tests use a pipe or a file).
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

    /// Lines appended to the file at `path` (created if missing). [`AccessLog::reopen`] opens
    /// it again by name, for log rotation (SIGUSR1).
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
        let shared = Arc::new(Shared {
            items: ArrayQueue::new(QUEUE_LINES),
            closed: AtomicBool::new(false),
            written: Written::default(),
        });
        let for_writer = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || writer_loop(&for_writer, open, reopenable));
        Self {
            inner: spawned.ok().map(|h| (shared, h.thread().clone())),
            dropped: AtomicU64::new(0),
        }
    }

    /// True when lines are written somewhere.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes `weir_access_log_dropped_total`.
    pub fn render(&self, e: &mut crate::prometheus::Exposition) {
        use crate::prometheus::Kind::Counter;
        e.family(
            "weir_access_log_dropped_total",
            Counter,
            "Access-log lines dropped because the writer fell behind.",
            [(&[][..], self.dropped() as f64)],
        );
        let Some((shared, _)) = &self.inner else {
            return;
        };
        let w = &shared.written;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        e.family(
            "weir_access_log_lines_total",
            Counter,
            "Access-log lines handed to the file or stream.",
            [(&[][..], n(&w.lines))],
        );
        e.family(
            "weir_access_log_bytes_total",
            Counter,
            "Access-log bytes handed to the file or stream.",
            [(&[][..], n(&w.bytes))],
        );
        e.family(
            "weir_access_log_write_errors_total",
            Counter,
            "Access-log writes and flushes that failed (a full disk, a closed pipe): their lines are lost.",
            [(&[][..], n(&w.errors))],
        );
    }

    /// Queues one record, as JSON.
    pub fn log(&self, record: &RequestRecord<'_>) {
        self.log_as(record, &LogFormat::default());
    }

    /// Queues one record in `format`. The writer is not woken per line (a wake-up per request
    /// costs more than the line): it drains the queue every few milliseconds, or at once when
    /// the queue is filling.
    pub fn log_as(&self, record: &RequestRecord<'_>, format: &LogFormat) {
        let Some((shared, writer)) = &self.inner else {
            return;
        };
        let Some(line) = format.line(record) else {
            return;
        };
        if shared.items.push(Item::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if shared.items.len() >= WAKE_AT {
            writer.unpark();
        }
    }

    fn control(&self, c: Control) -> bool {
        let Some((shared, writer)) = &self.inner else {
            return false;
        };
        // Queued behind the lines before it, so a flush covers them and a reopen splits the
        // lines exactly where it was asked. A full queue is waited out (rare, operator-driven).
        let mut item = Item::Control(c);
        for _ in 0..10_000 {
            writer.unpark();
            match shared.items.push(item) {
                Ok(()) => return true,
                Err(back) => item = back,
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        false
    }

    /// Reopens the log file by name (after logrotate moved it); nothing for stdout.
    pub fn reopen(&self) {
        self.control(Control::Reopen);
    }

    /// Waits (up to a second) until everything queued so far is written.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if self.control(Control::Flush(ack_tx)) {
            let _ = ack_rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some((shared, writer)) = &self.inner {
            shared.closed.store(true, Ordering::Release);
            writer.unpark();
        }
    }
}

fn writer_loop<F>(shared: &Shared, mut open: F, reopenable: bool)
where
    F: FnMut() -> std::io::Result<Box<dyn Write + Send>>,
{
    let Ok(first) = open() else { return };
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, first);
    let mut written = std::time::Instant::now();
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        while let Some(item) = shared.items.pop() {
            match item {
                Item::Line(line) => {
                    shared.written.result(out.write_all(&line));
                    shared.written.lines.fetch_add(1, Ordering::Relaxed);
                    let len = line.len() as u64;
                    shared.written.bytes.fetch_add(len, Ordering::Relaxed);
                }
                Item::Control(Control::Flush(ack)) => {
                    shared.written.result(out.flush());
                    let _ = ack.send(());
                }
                Item::Control(Control::Reopen) if reopenable => {
                    shared.written.result(out.flush());
                    match open() {
                        Ok(fresh) => out = std::io::BufWriter::with_capacity(WRITE_BUFFER, fresh),
                        // Keep writing to the old file rather than lose lines.
                        Err(e) => eprintln!("weir: cannot reopen the access log: {e}"),
                    }
                }
                Item::Control(Control::Reopen) => {}
            }
        }
        if closed || written.elapsed() >= WRITE_EVERY {
            shared.written.result(out.flush());
            written = std::time::Instant::now();
        }
        if closed {
            return;
        }
        std::thread::park_timeout(DRAIN_EVERY);
    }
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
            path: "/",
            status: 200,
            duration_ms: 1.0,
            completed: true,
            ..RequestRecord::default()
        }
    }

    #[test]
    fn failed_writes_are_counted_beside_the_lines_and_bytes_written() {
        let rendered = |log: &AccessLog| {
            let mut e = crate::prometheus::Exposition::default();
            log.render(&mut e);
            e.finish()
        };
        // /dev/full takes the open and refuses every write (ENOSPC).
        let log = AccessLog::to_file(std::path::Path::new("/dev/full")).expect("open /dev/full");
        log.log(&record());
        log.flush();
        let text = rendered(&log);
        assert!(text.contains("weir_access_log_lines_total 1\n"), "{text}");
        assert!(
            !text.contains("weir_access_log_write_errors_total 0\n"),
            "{text}"
        );
        let ok = AccessLog::to_writer(std::io::sink());
        ok.log(&record());
        ok.flush();
        let text = rendered(&ok);
        assert!(
            text.contains("weir_access_log_write_errors_total 0\n"),
            "{text}"
        );
        assert!(!text.contains("weir_access_log_bytes_total 0\n"), "{text}");
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
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn templates_render_fields_and_escape_dollars() {
        let mut r = record();
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.path = "/a\nb";
        let format = LogFormat::from_config(
            "$method ${path}! $status $trace_id $route $$",
            weir_config::AccessLogNames::Flat,
        );
        let line = String::from_utf8(format.line(&r).expect("line")).expect("utf8");
        assert_eq!(line, "GET /a b! 200 4bf92f3577b34da6a3ce929d0e0e4736 - $\n");
        // That every field has a renderer and a JSON key is generated from the one table
        // (see `record.rs`), not listed here.
    }
}
