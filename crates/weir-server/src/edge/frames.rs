//! HTTP/2 frame boundaries followed through a connection's bytes, one direction at a time, so
//! each stream can be credited with the bytes of its own frames (RFC 9113 §4.1: a 9-byte
//! header, then `length` bytes of payload). Only the frame headers are read; payloads pass
//! uncopied. What no stream owns (the preface, SETTINGS, PING, GOAWAY, connection-level
//! WINDOW_UPDATE) is credited to no request. The client's SETTINGS payloads are read for one
//! value: the flow-control window each new stream starts with (`INITIAL_WINDOW_SIZE`), which
//! says whether the client can take any response at all.

const HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const ACK: u8 = 0x1;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// The initial stream window until the client's SETTINGS says otherwise (RFC 9113 §6.5.2).
pub(super) const DEFAULT_WINDOW: u32 = 65_535;
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
    /// The read side: the client's frames.
    reads_client: bool,
    head: [u8; HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: usize,
    /// The current frame, once its header is complete.
    current: Option<StreamFrame>,
    /// A stream whose END_STREAM came on a HEADERS frame still waiting for its CONTINUATION.
    ending: Option<u32>,
    /// Inside a SETTINGS payload from the client: the bytes of the current 6-byte entry.
    setting: Option<([u8; 6], usize)>,
    /// The stream window the client announced last.
    client_window: u32,
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
            reads_client: preface > 0,
            head: [0; HEADER],
            have: 0,
            left: 0,
            current: None,
            ending: None,
            setting: None,
            client_window: DEFAULT_WINDOW,
        }
    }

    /// The window each new stream of the client starts with, as its SETTINGS last said (read
    /// side only).
    pub(super) fn client_window(&self) -> u32 {
        self.client_window
    }

    /// Reads SETTINGS payload bytes, entry by entry.
    fn settings_bytes(&mut self, mut bytes: &[u8]) {
        let Some((entry, have)) = self.setting.as_mut() else {
            return;
        };
        while !bytes.is_empty() {
            let n = (6 - *have).min(bytes.len());
            entry[*have..*have + n].copy_from_slice(&bytes[..n]);
            *have += n;
            bytes = &bytes[n..];
            if *have == 6 {
                *have = 0;
                let id = u16::from_be_bytes([entry[0], entry[1]]);
                if id == SETTINGS_INITIAL_WINDOW_SIZE {
                    self.client_window =
                        u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                }
            }
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
            if self.setting.is_some() {
                self.settings_bytes(&bytes[..n]);
            }
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
        // The client's own SETTINGS (the read side skipped the preface): not an ACK.
        self.setting = (kind == SETTINGS && stream == 0 && flags & ACK == 0 && self.reads_client)
            .then_some(([0; 6], 0));
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

    #[test]
    fn the_clients_initial_window_is_read_from_its_settings_whatever_the_reads() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // ENABLE_PUSH = 0, INITIAL_WINDOW_SIZE = 0, MAX_FRAME_SIZE = 16384.
        let mut payload = vec![0, 2, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        payload.extend([0, 5, 0, 0, 0x40, 0]);
        wire.extend(frame(SETTINGS, 0, 0, &payload));
        // An ACK carries no entries; a HEADERS frame is no SETTINGS.
        wire.extend(frame(SETTINGS, ACK, 0, &[]));
        wire.extend(frame(HEADERS, END_HEADERS, 1, &[0, 4, 0, 1, 0, 0]));
        for step in [1, 2, 5, 6, 7, 64, wire.len()] {
            let mut tap = FrameTap::from_client();
            assert_eq!(tap.client_window(), DEFAULT_WINDOW);
            for chunk in wire.chunks(step) {
                tap.feed(chunk, |_| {});
            }
            assert_eq!(tap.client_window(), 0, "reads of {step} bytes");
        }
        // A later SETTINGS opens it again; the server's own frames are never read for it.
        let mut tap = FrameTap::from_client();
        tap.feed(&wire, |_| {});
        tap.feed(&frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]), |_| {});
        assert_eq!(tap.client_window(), 65_536);
        let mut out = FrameTap::to_client();
        out.feed(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]), |_| {});
        assert_eq!(out.client_window(), DEFAULT_WINDOW);
    }
}
