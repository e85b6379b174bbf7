//! Work put at the end of the runtime's pass over the tasks that are ready.
//!
//! tokio runs the tasks woken by one look at the sockets one after another, each until it
//! waits. A task that wakes itself and returns `Pending` goes to the back of that queue: what
//! it does next runs after every task already ready in this pass, before the runtime looks at
//! the sockets again. ([`tokio::task::yield_now`] waits for that next look as well; this does
//! not, so when nothing else is ready the task runs on at once.)
//!
//! HAProxy's event loop reads every ready socket of a pass and then sends; a task per
//! connection that sends as soon as its answer is ready interleaves its sends with the reads
//! of the others. An HTTP/1.1 response written at the end of the pass comes out with the other
//! responses of that pass, back to back: the kernel's work for them on the peer's side (the
//! receiving socket's and its epoll's locks and lists, held by the peer's CPU in between)
//! costs less, measured in docs/benchmarks.md, "Responses at the end of the pass".
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! weir_core::pass::end().await;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that is ready on its second poll: the first wakes the task and returns `Pending`,
/// so the task is polled again after the tasks queued before it.
pub fn end() -> End {
    End { queued: false }
}

/// See [`end`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct End {
    queued: bool,
}

impl Future for End {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.queued {
            return Poll::Ready(());
        }
        self.queued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn log() -> Arc<Mutex<Vec<&'static str>>> {
        Arc::new(Mutex::new(Vec::new()))
    }

    /// What follows `end()` runs after the tasks that were ready before it.
    #[test]
    fn the_rest_runs_after_the_tasks_already_ready() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let order = log();
        rt.block_on(async {
            let (a, b) = (order.clone(), order.clone());
            let first = tokio::spawn(async move {
                a.lock().expect("lock").push("first, before");
                end().await;
                a.lock().expect("lock").push("first, after");
            });
            let second = tokio::spawn(async move {
                b.lock().expect("lock").push("second");
            });
            first.await.expect("first");
            second.await.expect("second");
        });
        assert_eq!(
            *order.lock().expect("lock"),
            ["first, before", "second", "first, after"]
        );
    }

    /// Alone, a task goes on without waiting for anything else (no timer, no socket): the
    /// runtime polls it again at once.
    #[test]
    fn alone_it_goes_on_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in 0..1000 {
                end().await;
            }
        });
    }

    /// The multi-thread runtime queues a task that woke itself behind the others too, not in
    /// its slot for the next task to run (where a task just spawned goes).
    #[test]
    fn the_multi_thread_runtime_does_the_same() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let order = log();
        let o = order.clone();
        rt.block_on(async move {
            tokio::spawn(async move {
                let b = o.clone();
                let second = tokio::spawn(async move {
                    b.lock().expect("lock").push("second");
                });
                o.lock().expect("lock").push("first, before");
                end().await;
                o.lock().expect("lock").push("first, after");
                second.await.expect("second");
            })
            .await
            .expect("first");
        });
        assert_eq!(
            *order.lock().expect("lock"),
            ["first, before", "second", "first, after"]
        );
    }
}
