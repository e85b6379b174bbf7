//! W3C Trace Context (`traceparent`): parsing what a caller sent, and the ids of the spans
//! Weir opens for a request.

use http::HeaderValue;

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The caller's span.
    pub parent_id: [u8; 8],
    /// The caller recorded its span (flag bit 0).
    pub sampled: bool,
}

impl Traceparent {
    /// Parses a `traceparent` value (W3C Trace Context §3.2). Version `00` must be exactly
    /// 55 characters; a later version may carry more after a `-`, and is read as version 00.
    /// All-zero ids and version `ff` are invalid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let version = hex_byte(value[0], value[1])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if version > 0 && value.len() > 55 && value[55] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(value[3 + 2 * i], value[4 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(value[36 + 2 * i], value[37 + 2 * i])?;
        }
        let flags = hex_byte(value[53], value[54])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }
}

/// Lowercase hex only, as the spec requires.
fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(hi)? << 4 | nibble(lo)?)
}

/// The trace a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id: the caller's, or a new one.
    pub trace_id: [u8; 16],
    /// The caller's span, if a valid `traceparent` came in.
    pub parent_id: Option<[u8; 8]>,
    /// Weir's spans, when Weir traces: the server span for the request and the client span
    /// for the upstream call (the parent the upstream sees). `None` when tracing is off and
    /// the ids are known only for the access log.
    pub spans: Option<Spans>,
    /// The spans are recorded and exported.
    pub sampled: bool,
}

/// The span ids Weir opens for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans {
    /// The request as Weir served it (kind SERVER).
    pub server: [u8; 8],
    /// The call to the upstream (kind CLIENT), child of `server`.
    pub upstream: [u8; 8],
}

impl TraceContext {
    /// The ids of a caller's trace, for the log only (Weir is not tracing).
    pub fn observed(incoming: Traceparent) -> Self {
        Self {
            trace_id: incoming.trace_id,
            parent_id: Some(incoming.parent_id),
            spans: None,
            sampled: false,
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` to send upstream: this trace, with Weir's upstream span as parent.
    pub fn upstream_traceparent(&self) -> Option<HeaderValue> {
        let spans = self.spans?;
        let mut value = [b'-'; 55];
        value[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut value[3..35]);
        hex_into(&spans.upstream, &mut value[36..52]);
        value[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        HeaderValue::from_bytes(&value).ok()
    }
}

/// Random non-zero ids.
pub fn new_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

/// A random non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    fastrand::u128(1..).to_be_bytes()
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of any id.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    out.into_iter().map(char::from).collect()
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let p = Traceparent::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.parent_id), "00f067aa0ba902b7");
        assert!(p.sampled);
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(Traceparent::parse(bad.as_bytes()), None, "{bad}");
        }
        // A later version may append fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(Traceparent::parse(later.as_bytes()).is_some());
    }

    #[test]
    fn upstream_header_names_weirs_span() {
        let ctx = TraceContext {
            trace_id: [0xab; 16],
            parent_id: None,
            spans: Some(Spans {
                server: [1; 8],
                upstream: [2; 8],
            }),
            sampled: true,
        };
        let v = ctx.upstream_traceparent().expect("header");
        assert_eq!(v, "00-abababababababababababababababab-0202020202020202-01");
    }
}
