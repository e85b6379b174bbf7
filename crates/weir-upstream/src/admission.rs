//! Concurrency cap of one upstream (HAProxy's `maxconn` + queue): at most `max_in_flight`
//! requests at once; up to `queue.size` more wait up to `queue.timeout`; the rest get 503.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weir_core::{ErrorKind, ProxyError};

/// The cap and its queue.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    queue_size: usize,
    queue_timeout: Duration,
    waiting: AtomicUsize,
    /// Requests refused (queue full or wait timed out), for metrics.
    pub rejected: AtomicU64,
    /// Requests that had to wait, for metrics.
    pub queued: AtomicU64,
}

impl ConcurrencyLimit {
    /// A cap of `max_in_flight` with the configured queue.
    pub fn new(max_in_flight: usize, queue: &weir_config::Queue) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            queue_size: queue.size,
            queue_timeout: queue.timeout.get(),
            waiting: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A slot, possibly after waiting in the queue; 503 (`UpstreamBusy`) otherwise.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, ProxyError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = || {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            ProxyError::new(ErrorKind::UpstreamBusy).retry_after(Duration::from_secs(1))
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_size {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let waited =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_queues_then_refuses() {
        let limit = Arc::new(ConcurrencyLimit::new(
            1,
            &weir_config::Queue {
                size: 1,
                timeout: weir_config::Duration::from_secs(1),
            },
        ));
        let first = limit.acquire().await.ok();
        assert!(first.is_some());
        // Second waits in the queue; third finds the queue full.
        let l2 = limit.clone();
        let second = tokio::spawn(async move { l2.acquire().await.is_ok() });
        tokio::task::yield_now().await;
        assert_eq!(limit.waiting(), 1);
        let third = limit.acquire().await;
        assert_eq!(third.err().map(|e| e.kind), Some(ErrorKind::UpstreamBusy));
        drop(first);
        assert!(second.await.unwrap_or(false));
        // A wait longer than the queue timeout is refused.
        let held = limit.acquire().await.ok();
        let timed_out = limit.acquire().await;
        assert!(timed_out.is_err());
        drop(held);
        assert_eq!(limit.rejected.load(Ordering::Relaxed), 2);
    }
}
