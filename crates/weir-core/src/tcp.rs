//! A TCP stream whose writes are `send(2)` and `sendmsg(2)`, never `writev(2)`.
//!
//! tokio's `TcpStream` writes one buffer with `send` but a list of buffers with `writev`, and
//! `writev` reaches the socket through the file layer (the file-position lock, the write-area
//! check, `fsnotify`) where `sendmsg` goes to it directly. Weir writes a response head and its
//! body as two buffers, and often a request head as a list of one: on loopback the file layer
//! cost 0.3 µs of CPU a request of 12.5 (HTTP/1.1, 1 KiB: `perf record` showed it beside
//! HAProxy's `send`; the pinned A/B in `docs/benchmarks.md` measured it). [`Tcp`] is the client
//! side's stream (under TLS too); the upstream side's `h1_client::Io::Tcp` writes with
//! [`poll_send_vectored`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// `MSG_NOSIGNAL`: a write to a closed connection is an `EPIPE` error, not a `SIGPIPE`.
const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// A connected TCP stream; reads as tokio's, writes with `send` / `sendmsg` (see the module
/// docs).
#[derive(Debug)]
pub struct Tcp(pub TcpStream);

/// Writes `bufs` to `stream` in one `send` (one non-empty buffer) or `sendmsg` (more), as much
/// as the socket takes.
pub fn poll_send_vectored(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let mut filled = bufs.iter().filter(|b| !b.is_empty());
    let Some(first) = filled.next() else {
        return Poll::Ready(Ok(0));
    };
    let single = filled.next().is_none();
    loop {
        ready!(stream.poll_write_ready(cx))?;
        // On `WouldBlock`, `try_io` clears the readiness: the next `poll_write_ready` waits.
        let sent = stream.try_io(Interest::WRITABLE, || {
            let socket = socket2::SockRef::from(stream);
            if single {
                socket.send_with_flags(first, FLAGS)
            } else {
                socket.send_vectored_with_flags(bufs, FLAGS)
            }
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return Poll::Ready(done),
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // tokio's single-buffer write is already a `send`.
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_send_vectored(&self.0, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (Tcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Tcp(client.expect("connect")), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn buffers_arrive_whole_and_in_order() {
        let (mut tcp, mut peer) = pair().await;
        let empty: &[IoSlice<'_>] = &[IoSlice::new(b""), IoSlice::new(b"")];
        assert_eq!(tcp.write_vectored(empty).await.expect("nothing"), 0);
        let one = [IoSlice::new(b""), IoSlice::new(b"head|")];
        assert_eq!(tcp.write_vectored(&one).await.expect("one"), 5);
        let many = [
            IoSlice::new(b"a"),
            IoSlice::new(b""),
            IoSlice::new(b"bc"),
            IoSlice::new(b"def"),
        ];
        assert_eq!(tcp.write_vectored(&many).await.expect("many"), 6);
        tcp.write_all(b"|tail").await.expect("plain write");
        tcp.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"head|abcdef|tail");
    }

    /// More than the socket buffers hold: the writer (on this one thread, it runs until it
    /// cannot) fills the socket and must wait for the reader — a lost wake-up hangs here, a
    /// readiness never cleared spins.
    #[tokio::test]
    async fn a_full_socket_waits_for_room() {
        let (mut tcp, mut peer) = pair().await;
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        const ROUNDS: usize = 512; // 32 MiB, two chunks a write
        let writer = tokio::spawn(async move {
            let mut sent = 0;
            let mut pending = 0usize;
            for _ in 0..ROUNDS {
                let mut left = &chunk[..];
                while !left.is_empty() {
                    let half = left.len() / 2;
                    let bufs = [IoSlice::new(&left[..half]), IoSlice::new(&left[half..])];
                    let n = tcp.write_vectored(&bufs).await.expect("write");
                    assert!(n > 0);
                    left = &left[n..];
                    sent += n;
                    pending += 1;
                }
            }
            tcp.shutdown().await.expect("shutdown");
            (sent, pending)
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = peer.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b,
                    ((got + i) % (64 * 1024) % 251) as u8,
                    "byte {}",
                    got + i
                );
            }
            got += n;
        }
        let (sent, writes) = writer.await.expect("writer");
        assert_eq!(sent, ROUNDS * 64 * 1024);
        assert_eq!(got, sent);
        assert!(
            writes > ROUNDS,
            "some writes were partial: the socket filled up"
        );
    }

    #[tokio::test]
    async fn a_closed_peer_is_an_error() {
        let (mut tcp, peer) = pair().await;
        drop(peer);
        let bufs = [IoSlice::new(b"one"), IoSlice::new(b"two")];
        // The first write may land in the socket before the reset comes back.
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = tcp.write_vectored(&bufs).await {
                failed = Some(e);
                break;
            }
            tokio::task::yield_now().await;
        }
        let e = failed.expect("writes to a closed peer fail");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
}
