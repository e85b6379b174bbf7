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

/// Lowercase hex of `bytes` into `out` (twice as long): four bytes at a time in a `u64`
/// ([`hex8`]), the last few by table. Request ids, trace and span ids, `traceparent`.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    let mut words = bytes.chunks_exact(4);
    let mut outs = out.chunks_exact_mut(8);
    for (word, digits) in words.by_ref().zip(outs.by_ref()) {
        if let Ok(word) = <[u8; 4]>::try_from(word) {
            digits.copy_from_slice(&hex8(u32::from_be_bytes(word)));
        }
    }
    for (b, pair) in words
        .remainder()
        .iter()
        .zip(outs.into_remainder().chunks_exact_mut(2))
    {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

/// `n` as 8 lowercase hex digits: each nibble spread into its own byte (the first digit in
/// the top byte), then `'0'` added to each, and `'a' - '0' - 10` more where the nibble is 10 or
/// above (adding 6 carries into the byte's bit 4 exactly then). A request id took 420
/// instructions with this where a table lookup per digit took 467; most of the rest is
/// `HeaderValue`'s check of the 32 bytes and their copy.
fn hex8(n: u32) -> [u8; 8] {
    let x = u64::from(n);
    let x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    let x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    let x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    let letters = ((x + 0x0606_0606_0606_0606) & 0x1010_1010_1010_1010) >> 4;
    (x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_match_format() {
        let hex16 = |n: u64| {
            let mut out = [0u8; 16];
            hex_into(&n.to_be_bytes(), &mut out);
            out
        };
        let mut n = 0x0123_4567_89ab_cdefu64;
        for v in [
            0,
            1,
            9,
            10,
            15,
            16,
            u64::MAX,
            0xa0b0_c0d0_e0f0_0f0e,
            0x9999_aaaa_ffff_0000,
        ] {
            assert_eq!(hex16(v), format!("{v:016x}").as_bytes(), "{v:x}");
        }
        // Lengths that are not a multiple of four: the last bytes by table.
        assert_eq!(hex(&[0xab, 0x01, 0xfe, 0x9c, 0x10]), "ab01fe9c10");
        assert_eq!(hex(&[0x0f]), "0f");
        assert_eq!(hex(&[]), "");
        for _ in 0..100_000 {
            assert_eq!(hex16(n), format!("{n:016x}").as_bytes(), "{n:x}");
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
    }

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
