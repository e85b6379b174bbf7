//! Fills straight to the disk tier: a large (or unsized) response is copied into its file as
//! it streams to the client, never held whole in memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use weir_cache::disk::DiskStore;
use weir_cache::store::Variant;
use weir_core::ResponseBody;

use super::coalesce::FillGuard;
use super::CacheHandle;

/// What a fill straight to disk needs on its blocking thread.
pub(super) struct DiskJob {
    pub(super) handle: Arc<CacheHandle>,
    pub(super) disk: Arc<DiskStore>,
    pub(super) primary: Vec<u8>,
    pub(super) uri: String,
    pub(super) vary: Vec<HeaderName>,
    pub(super) meta: Variant,
    pub(super) tags: Vec<String>,
    /// The declared length: a fill that reached it is complete even if the body was not
    /// polled to its end (hyper stops at the declared length).
    pub(super) expected: Option<usize>,
    pub(super) fill: Option<FillGuard>,
}

/// What the body hands the disk writer.
enum FillMsg {
    Chunk(Bytes),
    End,
}

/// Writes what a [`DiskTee`] sends into a disk fill, and commits it when the body ended whole.
/// Opening the file, each batch of writes (whatever is queued when the previous batch is done)
/// and the commit run on the blocking pool; while the origin is still sending, no thread is
/// held, so slow fills do not tie up the pool.
async fn write_fill(job: DiskJob, mut rx: tokio::sync::mpsc::Receiver<FillMsg>) {
    let DiskJob {
        handle,
        disk,
        primary,
        uri,
        vary,
        meta,
        tags,
        expected,
        fill,
    } = job;
    let _fill = fill;
    let counters = &handle.counters;
    let begun =
        tokio::task::spawn_blocking(move || disk.begin(&primary, &uri, &vary, &meta, &tags)).await;
    let Ok(Ok(mut writing)) = begun else {
        counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut ended = false;
    while !ended {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                FillMsg::Chunk(b) => batch.push(b),
                FillMsg::End => {
                    ended = true;
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        let written = tokio::task::spawn_blocking(move || {
            for b in &batch {
                writing.write(b)?;
            }
            Ok::<_, std::io::Error>(writing)
        })
        .await;
        match written {
            Ok(Ok(w)) => writing = w,
            // The fill was dropped on the blocking thread, its temporary file removed.
            _ => {
                counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let complete = ended || expected.is_some_and(|n| writing.written() == n as u64);
    let committed = tokio::task::spawn_blocking(move || {
        // An incomplete fill is dropped here, which removes its temporary file.
        complete.then(|| writing.commit())
    })
    .await;
    match committed {
        Ok(Some(Ok(()))) => {
            counters.stored.fetch_add(1, Ordering::Relaxed);
            counters.disk_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None) => {}
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "cache disk write failed");
            counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A response body on its way to the client whose bytes are also written, as they pass, into
/// a disk fill (see [`write_fill`]). The channel is bounded: a client is never served faster
/// than the disk takes the copy (no unbounded buffering), and the copy is abandoned — its
/// temporary file removed — when the body fails, exceeds `limit`, or is dropped early.
pub(super) struct DiskTee {
    inner: ResponseBody,
    tx: Option<tokio_util::sync::PollSender<FillMsg>>,
    seen: usize,
    limit: usize,
}

impl DiskTee {
    pub(super) fn start(
        inner: ResponseBody,
        limit: usize,
        job: DiskJob,
    ) -> http_body_util::combinators::UnsyncBoxBody<Bytes, weir_core::BoxError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<FillMsg>(16);
        drop(tokio::spawn(write_fill(job, rx)));
        http_body_util::combinators::UnsyncBoxBody::new(Self {
            inner,
            tx: Some(tokio_util::sync::PollSender::new(tx)),
            seen: 0,
            limit,
        })
    }
}

impl http_body::Body for DiskTee {
    type Data = Bytes;
    type Error = weir_core::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        // Room for the copy first: the client waits for the disk, not the other way round.
        if let Some(tx) = &mut this.tx {
            match tx.poll_reserve(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => this.tx = None,
                Poll::Ready(Ok(())) => {}
            }
        }
        let polled = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(p) => p,
        };
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(tx)) = (frame.data_ref(), &mut this.tx) {
                    this.seen += data.len();
                    // Over the limit, or the writer gone: the copy is abandoned.
                    if this.seen > this.limit || tx.send_item(FillMsg::Chunk(data.clone())).is_err()
                    {
                        this.tx = None;
                    }
                }
            }
            None => {
                if let Some(mut tx) = this.tx.take() {
                    let _ = tx.send_item(FillMsg::End);
                }
            }
            Some(Err(_)) => this.tx = None,
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.tx.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
