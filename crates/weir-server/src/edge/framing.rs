//! A strict check of HTTP/1.1 request framing on the raw bytes, before hyper parses them.
//!
//! hyper is lenient where RFC 9112 allows it: it accepts bare LF line endings, lets
//! `Transfer-Encoding` silently override `Content-Length`, folds identical duplicate
//! `Content-Length` lines into one, and skips chunk extensions unchecked. Each leniency is a way
//! for a client to frame a request one way for Weir and another way for some other parser on
//! the path (request smuggling). This guard follows the framing of every request on a
//! connection and stops at the first byte that is ambiguous; the connection then answers 400
//! and closes (see `conn.rs`). It only watches: the bytes hyper parses are the bytes it saw.
//!
//! After a CONNECT or an `Upgrade` request (and its body) it pauses: nothing more is passed
//! to hyper until the pipeline has answered that request (see `ConnState::tunnel_decided`).
//! If the answer opened a tunnel (101, or 2xx to CONNECT) the guard steps aside for good;
//! otherwise it re-arms and the bytes that follow are checked as the next request, so an
//! `Upgrade` header no upstream accepted cannot switch the guard off for the rest of the
//! connection. It also steps aside after an HTTP/2 preface or anything hyper itself refuses.

/// Longest line followed; a longer one is hyper's to refuse (431).
const MAX_LINE: usize = 64 * 1024;

/// Why following stopped.
enum Stop {
    Ambiguous(usize),
    Paused(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Request line and header lines.
    Head,
    /// A `Content-Length` body: bytes left.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data: bytes left.
    ChunkData(u64),
    /// The CRLF after chunk data: how many of its two bytes have been seen.
    ChunkEnd(u8),
    /// Trailer lines after the last chunk.
    Trailers,
    /// After a CONNECT or `Upgrade` request: waiting to learn whether it opened a tunnel.
    Paused,
    /// Not following any more.
    Off,
}

/// What following some bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// All of them are fine.
    Clean,
    /// Byte `i` is where the framing became ambiguous.
    Ambiguous(usize),
    /// The bytes from `i` on follow a CONNECT or `Upgrade` request: hold them back until
    /// [`FramingGuard::resume`].
    Paused(usize),
}

/// Follows the framing of the requests on one connection.
#[derive(Debug)]
pub(crate) struct FramingGuard {
    state: State,
    line: Vec<u8>,
    prev_cr: bool,
    first_line: bool,
    lengths: u32,
    length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    upgrade: bool,
    connect: bool,
    /// A request ended in the bytes being followed; `ends` has where (offsets into the
    /// last `feed`'s bytes, just past each request's last byte), for the wire byte counts.
    ended: bool,
    ends: Vec<usize>,
}

impl Default for FramingGuard {
    fn default() -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            prev_cr: false,
            first_line: true,
            lengths: 0,
            length: None,
            transfer_encoding: false,
            chunked: false,
            upgrade: false,
            connect: false,
            ended: false,
            ends: Vec::new(),
        }
    }
}

impl FramingGuard {
    /// Follows `bytes`.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Feed {
        self.ends.clear();
        match self.follow(bytes) {
            Ok(()) => Feed::Clean,
            Err(Stop::Ambiguous(i)) => Feed::Ambiguous(i),
            Err(Stop::Paused(i)) => Feed::Paused(i),
        }
    }

    /// Where requests ended in the bytes of the last `feed` (offsets just past each one).
    pub(crate) fn ends(&self) -> &[usize] {
        &self.ends
    }

    /// Notes a request that ended at `i`.
    fn note_end(&mut self, i: usize) {
        if std::mem::take(&mut self.ended) {
            self.ends.push(i);
        }
    }

    /// Waiting for the answer to a CONNECT or `Upgrade` request.
    pub(crate) fn is_paused(&self) -> bool {
        self.state == State::Paused
    }

    /// The paused request was answered: `tunnel` when the connection now carries something
    /// else than HTTP/1.1 requests (the guard steps aside), else the next request is followed.
    pub(crate) fn resume(&mut self, tunnel: bool) {
        if self.state == State::Paused {
            self.state = if tunnel { State::Off } else { State::Head };
        }
    }

    fn follow(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Off => return Ok(()),
                State::Paused => return Err(Stop::Paused(i)),
                State::Body(left) | State::ChunkData(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => self.next_request(),
                        (State::Body(_), n) => State::Body(n),
                        (_, 0) => State::ChunkEnd(0),
                        (_, n) => State::ChunkData(n),
                    };
                    self.note_end(i);
                }
                State::ChunkEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if bytes[i] != want {
                        return Err(Stop::Ambiguous(i));
                    }
                    i += 1;
                    self.state = if seen == 0 {
                        State::ChunkEnd(1)
                    } else {
                        State::ChunkSize
                    };
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    if self.prev_cr {
                        // A line's CR came at the end of the last read: its LF must follow.
                        if bytes[i] != b'\n' {
                            return Err(Stop::Ambiguous(i));
                        }
                        self.prev_cr = false;
                        self.end_of_buffered_line(&[])
                            .map_err(|()| Stop::Ambiguous(i))?;
                        i += 1;
                        self.note_end(i);
                        continue;
                    }
                    // Lines are found with memchr, not byte by byte: the head of every
                    // request passes through here.
                    let rest = &bytes[i..];
                    let Some(j) = memchr::memchr2(b'\r', b'\n', rest) else {
                        if self.line.len() + rest.len() > MAX_LINE {
                            self.state = State::Off;
                        } else {
                            self.line.extend_from_slice(rest);
                        }
                        return Ok(());
                    };
                    if self.line.len() + j > MAX_LINE {
                        self.state = State::Off;
                        return Ok(());
                    }
                    if rest[j] == b'\n' {
                        // An LF without its CR.
                        return Err(Stop::Ambiguous(i + j));
                    }
                    match rest.get(j + 1) {
                        None => {
                            self.line.extend_from_slice(&rest[..j]);
                            self.prev_cr = true;
                            i += j + 1;
                        }
                        Some(b'\n') => {
                            let ended = if self.line.is_empty() {
                                self.end_of_line(&rest[..j])
                            } else {
                                self.end_of_buffered_line(&rest[..j])
                            };
                            ended.map_err(|()| Stop::Ambiguous(i + j + 1))?;
                            i += j + 2;
                            self.note_end(i);
                        }
                        // A CR not followed by LF.
                        Some(_) => return Err(Stop::Ambiguous(i + j + 1)),
                    }
                }
            }
        }
        Ok(())
    }

    /// A request ended: the next one's head follows, unless it may have opened a tunnel.
    fn next_request(&mut self) -> State {
        self.ended = true;
        let paused = self.upgrade || self.connect;
        self.reset_head();
        if paused {
            State::Paused
        } else {
            State::Head
        }
    }

    fn reset_head(&mut self) {
        self.first_line = true;
        self.lengths = 0;
        self.length = None;
        self.transfer_encoding = false;
        self.chunked = false;
        self.upgrade = false;
        self.connect = false;
    }

    /// A line that began in an earlier read ends with `tail` (without its CRLF).
    fn end_of_buffered_line(&mut self, tail: &[u8]) -> Result<(), ()> {
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(tail);
        let result = self.end_of_line(&line);
        line.clear();
        self.line = line;
        result
    }

    /// A complete line (without its CRLF).
    fn end_of_line(&mut self, line: &[u8]) -> Result<(), ()> {
        match self.state {
            State::Head => self.head_line(line),
            State::ChunkSize => self.chunk_size_line(line),
            State::Trailers => {
                if line.is_empty() {
                    self.state = self.next_request();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn head_line(&mut self, line: &[u8]) -> Result<(), ()> {
        if self.first_line {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            if line.is_empty() {
                return Ok(());
            }
            self.first_line = false;
            if line.starts_with(b"PRI * HTTP/2") {
                self.state = State::Off;
            } else if line.starts_with(b"CONNECT ") {
                self.connect = true;
            }
            return Ok(());
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold: hyper refuses it.
            self.state = State::Off;
            return Ok(());
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            self.state = State::Off;
            return Ok(());
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.lengths += 1;
            match std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            {
                Some(v) => self.length = v.parse().ok(),
                None => self.state = State::Off,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            self.chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
        Ok(())
    }

    fn end_of_head(&mut self) -> Result<(), ()> {
        if self.lengths > 1 || (self.lengths > 0 && self.transfer_encoding) {
            return Err(());
        }
        // An upgrade or CONNECT request's own body is framed like any other; what follows it
        // waits for the answer (`next_request`).
        self.state = if self.transfer_encoding {
            if self.chunked {
                State::ChunkSize
            } else {
                // hyper refuses any other final coding.
                State::Off
            }
        } else {
            match self.length {
                Some(n) if n > 0 => State::Body(n),
                _ => self.next_request(),
            }
        };
        Ok(())
    }

    /// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1.1): hex digits, then only `;`-introduced
    /// extensions made of visible characters, spaces and tabs.
    fn chunk_size_line(&mut self, line: &[u8]) -> Result<(), ()> {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 {
            return Err(());
        }
        let rest = &line[digits..];
        let ext = trim_start(rest);
        if !ext.is_empty() && ext[0] != b';' {
            return Err(());
        }
        if !ext.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(());
        }
        let size = std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(())?;
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::ChunkData(size)
        };
        Ok(())
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    &b[start..]
}

fn trim(b: &[u8]) -> &[u8] {
    let b = trim_start(b);
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |p| p + 1);
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8]) -> Result<(), usize> {
        match FramingGuard::default().feed(input) {
            Feed::Ambiguous(i) => Err(i),
            _ => Ok(()),
        }
    }

    #[test]
    fn follows_valid_pipelines_byte_by_byte() {
        let input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(check(input), Ok(()));
        let mut g = FramingGuard::default();
        for b in input {
            assert_eq!(g.feed(std::slice::from_ref(b)), Feed::Clean);
        }
        assert_eq!(g.state, State::Head);
    }

    /// Where each request of a pipeline ends (for the wire byte counts), whatever the reads'
    /// sizes: just past its last byte.
    #[test]
    fn request_ends_whatever_the_reads() {
        let requests: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"\r\nGET /last HTTP/1.1\r\n\r\n",
        ];
        let input = requests.concat();
        let want: Vec<usize> = requests
            .iter()
            .scan(0, |at, r| {
                *at += r.len();
                Some(*at)
            })
            .collect();
        for step in [1, 2, 7, input.len()] {
            let mut g = FramingGuard::default();
            let mut ends = Vec::new();
            for (k, piece) in input.chunks(step).enumerate() {
                assert_eq!(g.feed(piece), Feed::Clean);
                ends.extend(g.ends().iter().map(|e| k * step + e));
            }
            assert_eq!(ends, want, "reads of {step}");
        }
    }

    /// Where the reads split a request must not change what the guard finds.
    #[test]
    fn any_split_finds_the_same() {
        let inputs: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"\r\nGET / HTTP/1.1\r\nUpgrade: x\r\n\r\nrest",
        ];
        for input in inputs {
            let whole = FramingGuard::default().feed(input);
            for cut in 0..=input.len() {
                let mut g = FramingGuard::default();
                let first = g.feed(&input[..cut]);
                let found = match first {
                    Feed::Clean => match g.feed(&input[cut..]) {
                        Feed::Clean => Feed::Clean,
                        Feed::Ambiguous(i) => Feed::Ambiguous(cut + i),
                        Feed::Paused(i) => Feed::Paused(cut + i),
                    },
                    other => other,
                };
                assert_eq!(
                    found,
                    whole,
                    "split at {cut} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn stops_at_the_first_ambiguous_byte() {
        assert_eq!(check(b"GET / HTTP/1.1\nHost: a\n\n"), Err(14));
        assert!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx").is_err()
        );
        assert!(check(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .is_err());
        assert!(check(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n"
        )
        .is_err());
        assert!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX").is_err()
        );
        // Bytes after an Upgrade request's head wait for its answer.
        let upgrade = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        let mut input = upgrade.to_vec();
        input.extend_from_slice(b"\x00\n\n");
        let mut g = FramingGuard::default();
        assert_eq!(g.feed(&input), Feed::Paused(upgrade.len()));
        assert!(g.is_paused());
        // A tunnel: what follows is not HTTP/1.1.
        g.resume(true);
        assert_eq!(g.feed(b"\x00\n\n"), Feed::Clean);
        // No tunnel: the guard re-arms and checks the next request.
        let mut g = FramingGuard::default();
        assert_eq!(g.feed(&input), Feed::Paused(upgrade.len()));
        g.resume(false);
        assert_eq!(g.feed(b"GET / HTTP/1.1\nHost: a\n\n"), Feed::Ambiguous(14));
        // The upgrade request's own body is followed before pausing.
        let mut g = FramingGuard::default();
        let with_body = b"POST / HTTP/1.1\r\nUpgrade: x\r\nContent-Length: 3\r\n\r\nabcNEXT";
        assert_eq!(g.feed(with_body), Feed::Paused(with_body.len() - 4));
    }
}
