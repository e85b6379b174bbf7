//! HTTP/2 frame boundaries followed through a connection's bytes, one direction at a time, so
//! each stream can be credited with the bytes of its own frames (RFC 9113 §4.1: a 9-byte
//! header, then `length` bytes of payload). Only the frame headers are read; payloads pass
//! uncopied. What no stream owns (the preface, SETTINGS, PING, GOAWAY, connection-level
//! WINDOW_UPDATE) is credited to no request.

const HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One whole frame of a stream, passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamFrame {
    pub(super) stream: u32,
    /// Header and payload.
    pub(super) bytes: u64,
    /// The sender is done with the stream: its last frame (END_STREAM, with the header block
    /// complete) or a reset.
    pub(super) ends: bool,
    /// A RST_STREAM: the stream is over for both sides.
    pub(super) reset: bool,
}

/// Where the next frame begins in one direction's bytes.
#[derive(Debug)]
pub(super) struct FrameTap {
    /// Bytes of the client connection preface still to skip (the read side of a server).
    preface: usize,
    head: [u8; HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: usize,
    /// The current frame, once its header is complete.
    current: Option<StreamFrame>,
    /// A stream whose END_STREAM came on a HEADERS frame still waiting for its CONTINUATION.
    ending: Option<u32>,
}

impl FrameTap {
    /// The bytes a server reads: the 24-byte preface, then frames.
    pub(super) fn from_client() -> Self {
        Self::after(24)
    }

    /// The bytes a server writes: frames from the first byte.
    pub(super) fn to_client() -> Self {
        Self::after(0)
    }

    fn after(preface: usize) -> Self {
        Self {
            preface,
            head: [0; HEADER],
            have: 0,
            left: 0,
            current: None,
            ending: None,
        }
    }

    /// Follows `bytes`; `each` gets every stream frame whose last byte they hold.
    pub(super) fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(StreamFrame)) {
        let skip = self.preface.min(bytes.len());
        self.preface -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
            if self.have < HEADER {
                let n = (HEADER - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have < HEADER {
                    return;
                }
                self.begin();
            }
            let n = self.left.min(bytes.len());
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                self.have = 0;
                if let Some(frame) = self.current.take() {
                    each(frame);
                }
            }
        }
    }

    /// The header is complete: what frame follows.
    fn begin(&mut self) {
        let h = &self.head;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.left = len;
        let ends = match kind {
            DATA => flags & END_STREAM != 0,
            HEADERS if flags & END_STREAM != 0 && flags & END_HEADERS == 0 => {
                self.ending = Some(stream);
                false
            }
            HEADERS => flags & END_STREAM != 0,
            CONTINUATION if flags & END_HEADERS != 0 => self.ending.take() == Some(stream),
            RST_STREAM => true,
            _ => false,
        };
        self.current = (stream != 0).then_some(StreamFrame {
            stream,
            bytes: (HEADER + len) as u64,
            ends,
            reset: kind == RST_STREAM,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_credited_to_their_streams_whatever_the_reads() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(0x4, 0, 0, &[0; 6])); // SETTINGS: no stream
        wire.extend(frame(HEADERS, END_HEADERS, 1, &[0x82; 10]));
        wire.extend(frame(HEADERS, END_STREAM, 3, &[0x82; 5])); // continued below
        wire.extend(frame(DATA, 0, 1, &[7; 100]));
        wire.extend(frame(CONTINUATION, END_HEADERS, 3, &[0x82; 4]));
        wire.extend(frame(DATA, END_STREAM, 1, &[7; 20]));
        wire.extend(frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]));
        let expected = vec![
            (1, 19, false),
            (3, 14, false),
            (1, 109, false),
            (3, 13, true),
            (1, 29, true),
            (5, 13, true),
        ];
        for step in [1, 2, 7, 9, 10, 64, wire.len()] {
            let mut tap = FrameTap::from_client();
            let mut seen = Vec::new();
            for chunk in wire.chunks(step) {
                tap.feed(chunk, |f| {
                    assert_eq!(f.reset, f.stream == 5);
                    seen.push((f.stream, f.bytes, f.ends));
                });
            }
            assert_eq!(seen, expected, "reads of {step} bytes");
        }
    }
}
