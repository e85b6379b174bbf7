//! IO helpers shared by the edge's stream wrappers, the writer of the HTTP/1.1 heads Weir
//! serializes once or queues (refusals, interim responses), the `Date` value, and the
//! [`WakeFlag`] that keeps a task from polling what has not woken it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};

/// A waker of its own for something a task polls beside other work (a rare event, the
/// client's socket while a request is answered), which notes that it fired before waking the
/// task. The task polls that thing again only when the flag says so: a flag check per wake-up
/// of the task instead of a poll that would find nothing (for a socket read, the spare buffer
/// taken and given back and tokio's readiness check, ~260 instructions).
pub(super) struct WakeFlag {
    flag: Arc<Flag>,
    waker: Waker,
}

/// What the waker sets, and the task it wakes.
struct Flag {
    woken: AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl WakeFlag {
    /// A flag that is set (the first poll goes through).
    pub(super) fn new() -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        Self {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// The waker to poll the watched thing with.
    pub(super) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Whether the waker fired since the last call (the flag is cleared); the task in `cx` is
    /// the one it wakes next. Cleared before the poll it allows, so a wake-up during that poll
    /// is not lost.
    pub(super) fn take(&self, cx: &Context<'_>) -> bool {
        self.flag.task.register(cx.waker());
        self.flag.woken.swap(false, Ordering::AcqRel)
    }

    /// Sets the flag by hand: the next poll goes through (it may find more).
    pub(super) fn set(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }
}

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Appends an HTTP/1.1 status line and `fields`, and the blank line that ends the head.
pub(crate) fn http1_head(out: &mut Vec<u8>, status: http::StatusCode, fields: &http::HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Today's `Date` value, formatted once a second per thread.
pub(crate) fn date() -> http::HeaderValue {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, http::HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, http::HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| {
        if *at != second {
            *at = second;
            *value = http::HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        }
        value.clone()
    })
}

/// `AsyncWrite` for a pin-projected wrapper whose `inner` stream takes every write as is (the
/// read-side wrapper `Prefixed`; `WatchedIo` counts its writes).
macro_rules! write_through {
    ($ty:ident) => {
        impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for $ty<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
pub(crate) use write_through;
