//! Request coalescing: the first miss of a key leads the fill; later requests for it wait
//! (at most `lock_timeout`) and look again. A leaf of the cache module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Fills in flight: the first miss of a key leads; later ones wait for it. Carried over a
/// reload with the cache's name, so waiters keep coalescing across the swap.
#[derive(Debug, Default)]
pub(super) struct Fills {
    map: Mutex<HashMap<Vec<u8>, watch::Receiver<()>>>,
}

/// Held by the request filling a key; dropping it wakes the waiters.
pub(crate) struct FillGuard {
    fills: Arc<Fills>,
    key: Vec<u8>,
    _tx: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let mut map = self.fills.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        // The sender drops with the guard: every waiter's `changed()` returns.
    }
}

/// Whether a request leads the fill of its key or waits for it.
pub(super) enum Turn {
    Lead(FillGuard),
    Wait(watch::Receiver<()>),
}

impl Fills {
    /// Leads the fill of `key`, or waits for the request that does.
    pub(super) fn turn(self: &Arc<Self>, key: &[u8]) -> Turn {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            return Turn::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.to_vec(), rx);
        Turn::Lead(FillGuard {
            fills: self.clone(),
            key: key.to_vec(),
            _tx: tx,
        })
    }

    /// Keys being filled now.
    pub(super) fn in_flight(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
