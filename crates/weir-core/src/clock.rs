//! One clock reading per poll of a connection's task.
//!
//! A proxied request read the monotonic clock ~13 times: its connection's activity marks, the
//! request's start and end, the upstream call's try, send and answer, the pool's idle stamps.
//! In a virtual machine a reading is a `clock_gettime` of ~25 ns (kvm-clock), and `perf`
//! put 0.34 µs of an HTTP/1.1 request's 12 there, where HAProxy and nginx read the clock once
//! per turn of their event loop. Here the unit is one poll of a task: inside [`scope`] (a
//! connection's task, an HTTP/2 stream's task — [`Clocked`]), the first [`now`] reads the
//! clock and later ones in the same poll get that reading. A request's work between two
//! waits runs in one poll (microseconds), so the times it measures keep their precision at
//! the waits — where the time goes. Outside a scope, [`now`] is `Instant::now()`.
//!
//! ```
//! use weir_core::clock;
//! let (a, b) = clock::scope(|| (clock::now(), clock::now()));
//! assert_eq!(a, b);
//! assert!(clock::scope(clock::now) >= b);
//! ```

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

thread_local! {
    /// `None`: no scope on this thread; `Some(None)`: a scope that has not read the clock yet.
    static POLL: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// Now: the reading this poll already took, or a new one.
pub fn now() -> Instant {
    POLL.with(|poll| match poll.get() {
        Some(Some(at)) => at,
        Some(None) => {
            let at = Instant::now();
            poll.set(Some(Some(at)));
            at
        }
        None => Instant::now(),
    })
}

/// The time since `at` (a tokio or a standard `Instant`), by [`now`].
pub fn elapsed(at: impl Into<std::time::Instant>) -> Duration {
    now().into_std().saturating_duration_since(at.into())
}

/// Runs `f` as one poll: its [`now`] readings are one. Nested scopes start afresh and the outer
/// one's state comes back after (also when `f` panics).
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<Instant>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLL.with(|poll| poll.set(self.0));
        }
    }
    let _restore = Restore(POLL.with(|poll| poll.replace(Some(None))));
    f()
}

pin_project_lite::pin_project! {
    /// A future whose every poll is a [`scope`].
    pub struct Clocked<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Clocked<F> {
    pub fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for Clocked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.project().inner;
        scope(|| inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside a scope every reading is the clock's: readings move on (waits for the clock to
    /// tick, bounded by a count, not a duration).
    fn a_later_reading(than: Instant) -> Instant {
        for _ in 0..1_000_000 {
            let at = now();
            if at > than {
                return at;
            }
            std::hint::spin_loop();
        }
        panic!("the clock did not move");
    }

    #[test]
    fn one_reading_per_scope_and_fresh_ones_outside() {
        let outside = now();
        let later = a_later_reading(outside);
        assert!(later > outside);
        let (first, again, nested, after_nested) = scope(|| {
            let first = now();
            let nested = scope(|| {
                let n = a_later_reading_within_scope(first);
                assert_eq!(now(), n, "a nested scope keeps its own reading");
                n
            });
            (first, now(), nested, now())
        });
        assert_eq!(first, again, "one reading within a scope");
        assert!(nested > first, "a nested scope reads afresh");
        assert_eq!(after_nested, first, "the outer scope's reading comes back");
        let next = scope(now);
        assert!(next >= nested, "each scope reads the clock");
    }

    /// Within a scope, waits for the clock to pass `than` by reading it through a nested scope
    /// each time (each one reads afresh).
    fn a_later_reading_within_scope(than: Instant) -> Instant {
        for _ in 0..1_000_000 {
            let at = Instant::now();
            if at > than {
                // The scope's first reading is the clock's, so it is at least `at`.
                let r = now();
                assert!(r >= at);
                return r;
            }
            std::hint::spin_loop();
        }
        panic!("the clock did not move");
    }

    #[test]
    fn a_panic_in_a_scope_ends_it() {
        let caught = std::panic::catch_unwind(|| {
            scope(|| {
                let _ = now();
                panic!("inside");
            })
        });
        assert!(caught.is_err());
        POLL.with(|poll| assert_eq!(poll.get(), None, "no scope left behind"));
    }

    #[tokio::test]
    async fn a_clocked_future_reads_once_per_poll() {
        let mut readings = Vec::new();
        let mut polls = 0;
        let fut = Clocked::new(std::future::poll_fn(|cx| {
            polls += 1;
            readings.push((now(), now()));
            if polls < 3 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        fut.await;
        assert_eq!(readings.len(), 3);
        assert!(readings.iter().all(|(a, b)| a == b));
        POLL.with(|poll| assert_eq!(poll.get(), None));
    }
}
