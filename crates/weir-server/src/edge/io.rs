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

/// Today's `Date` value, formatted once a second per thread. The wall clock is read only when
/// the second may have turned: until then the poll's monotonic reading (`weir_core::clock`)
/// says the value holds.
pub(crate) fn date() -> http::HeaderValue {
    struct Cached {
        /// Until when (monotonic) `value` is this second's.
        until: tokio::time::Instant,
        value: http::HeaderValue,
    }
    thread_local! {
        static CACHED: std::cell::RefCell<Option<Cached>> = const { std::cell::RefCell::new(None) };
    }
    let mono = weir_core::clock::now();
    CACHED.with_borrow_mut(|cached| {
        if let Some(c) = cached.as_ref().filter(|c| mono < c.until) {
            return c.value.clone();
        }
        let now = std::time::SystemTime::now();
        let into_second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(std::time::Duration::ZERO, |d| {
                std::time::Duration::from_nanos(u64::from(d.subsec_nanos()))
            });
        let value = http::HeaderValue::from_str(&httpdate::fmt_http_date(now))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        *cached = Some(Cached {
            until: mono + (std::time::Duration::from_secs(1) - into_second),
            value: value.clone(),
        });
        value
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: &http::HeaderValue) -> u64 {
        let at = httpdate::parse_http_date(value.to_str().expect("ascii")).expect("an HTTP date");
        at.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    fn wall() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    /// The cached value is today's second, and it moves on when the second turns (waited for by
    /// watching the wall clock, a bounded number of times).
    #[test]
    fn the_date_is_the_wall_clocks_second() {
        let before = wall();
        let first = seconds(&date());
        assert!(
            first >= before && first <= wall(),
            "{first} not in {before}.."
        );
        let mut turned = false;
        for _ in 0..300 {
            if wall() > first {
                turned = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(turned, "the wall clock did not move in 3 s");
        let next = seconds(&date());
        assert!(next > first, "{next} after {first}");
        assert!(next <= wall());
    }
}
