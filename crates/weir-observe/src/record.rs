//! The one record every request ends in. Its fields come from the access-log field table
//! ([`weir_config::access_log_fields`]): the struct, the JSON writer, the template writer and
//! the span attributes below are all generated from it, so a new field is a line there, a
//! line in [`RequestRecord::of`] (the compiler asks for it), and the phase that sets it.

use std::time::SystemTime;

use weir_core::RequestCtx;

/// A span attribute's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpanValue<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
}

macro_rules! field_type {
    (text) => { &'a str };
    (owned) => { String };
    (maybe) => { Option<&'a str> };
    (omitted) => { Option<&'a str> };
    (omitted_owned) => { Option<String> };
    (int) => { u64 };
    (omitted_int) => { Option<u64> };
    (count) => { u64 };
    (ms) => { f64 };
    (omitted_ms) => { Option<f64> };
    (flag) => { bool };
    (headers) => { Option<&'a [(http::HeaderName, String)]> };
}

/// Writes `"key":value` (with the separating comma) the way the kind says, or nothing.
macro_rules! json_field {
    ($out:ident, $key:expr, text, $v:expr) => {{
        key($out, $key);
        json_str($out, $v);
    }};
    ($out:ident, $key:expr, owned, $v:expr) => {{
        key($out, $key);
        json_str($out, &$v);
    }};
    ($out:ident, $key:expr, maybe, $v:expr) => {{
        key($out, $key);
        json_opt($out, $v);
    }};
    ($out:ident, $key:expr, omitted, $v:expr) => {
        if let Some(v) = $v {
            key($out, $key);
            json_str($out, v);
        }
    };
    ($out:ident, $key:expr, omitted_owned, $v:expr) => {
        if let Some(v) = &$v {
            key($out, $key);
            json_str($out, v);
        }
    };
    ($out:ident, $key:expr, int, $v:expr) => {{
        key($out, $key);
        json_u64($out, $v);
    }};
    ($out:ident, $key:expr, omitted_int, $v:expr) => {
        if let Some(v) = $v {
            key($out, $key);
            json_u64($out, v);
        }
    };
    ($out:ident, $key:expr, count, $v:expr) => {
        if $v != 0 {
            key($out, $key);
            json_u64($out, $v);
        }
    };
    ($out:ident, $key:expr, ms, $v:expr) => {{
        key($out, $key);
        json_ms($out, $v);
    }};
    ($out:ident, $key:expr, omitted_ms, $v:expr) => {
        if let Some(ms) = $v {
            key($out, $key);
            json_ms($out, ms);
        }
    };
    ($out:ident, $key:expr, flag, $v:expr) => {{
        key($out, $key);
        $out.extend_from_slice(if $v { b"true" } else { b"false" });
    }};
    ($out:ident, $key:expr, headers, $v:expr) => {
        if let Some(list) = $v {
            key($out, $key);
            $out.push(b'{');
            for (i, (name, value)) in list.iter().enumerate() {
                if i > 0 {
                    $out.push(b',');
                }
                json_str($out, name.as_str());
                $out.push(b':');
                json_str($out, value);
            }
            $out.push(b'}');
        }
    };
}

/// Writes a value as template text (`-` when absent).
macro_rules! text_field {
    ($out:ident, text, $v:expr) => {
        $out.push_str($v)
    };
    ($out:ident, owned, $v:expr) => {
        $out.push_str(&$v)
    };
    ($out:ident, maybe, $v:expr) => {
        $out.push_str($v.unwrap_or("-"))
    };
    ($out:ident, omitted, $v:expr) => {
        $out.push_str($v.unwrap_or("-"))
    };
    ($out:ident, omitted_owned, $v:expr) => {
        $out.push_str($v.as_deref().unwrap_or("-"))
    };
    ($out:ident, int, $v:expr) => {
        weir_core::text::push_u64($out, $v)
    };
    ($out:ident, count, $v:expr) => {
        weir_core::text::push_u64($out, $v)
    };
    ($out:ident, omitted_int, $v:expr) => {
        match $v {
            Some(v) => weir_core::text::push_u64($out, v),
            None => $out.push('-'),
        }
    };
    ($out:ident, ms, $v:expr) => {
        push_ms($out, Some($v))
    };
    ($out:ident, omitted_ms, $v:expr) => {
        push_ms($out, $v)
    };
    ($out:ident, flag, $v:expr) => {
        $out.push_str(if $v { "true" } else { "false" })
    };
    ($out:ident, headers, $v:expr) => {
        match $v {
            Some(list) if !list.is_empty() => {
                for (i, (name, value)) in list.iter().enumerate() {
                    if i > 0 {
                        $out.push(' ');
                    }
                    $out.push_str(name.as_str());
                    $out.push('=');
                    $out.push_str(value);
                }
            }
            _ => $out.push('-'),
        }
    };
}

/// Hands a field to `f` as a span attribute when the table names one and it has a value.
macro_rules! span_field {
    ($f:ident, _, $how:ident, $v:expr) => {};
    ($f:ident, $attr:literal, text, $v:expr) => {
        $f($attr, SpanValue::Str($v))
    };
    ($f:ident, $attr:literal, maybe, $v:expr) => {
        if let Some(v) = $v {
            $f($attr, SpanValue::Str(v))
        }
    };
    ($f:ident, $attr:literal, omitted, $v:expr) => {
        if let Some(v) = $v {
            $f($attr, SpanValue::Str(v))
        }
    };
    ($f:ident, $attr:literal, omitted_owned, $v:expr) => {
        if let Some(v) = &$v {
            $f($attr, SpanValue::Str(v))
        }
    };
    ($f:ident, $attr:literal, count, $v:expr) => {
        if $v != 0 {
            $f($attr, SpanValue::Int(i64::try_from($v).unwrap_or(i64::MAX)))
        }
    };
    ($f:ident, $attr:literal, int, $v:expr) => {
        $f($attr, SpanValue::Int(i64::try_from($v).unwrap_or(i64::MAX)))
    };
}

macro_rules! request_record {
    ($($name:ident: $how:ident, $span:tt, $otel:literal, $doc:literal;)*) => {
        /// What happened to one request. Field names are the access log's JSON keys and
        /// template variables.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct RequestRecord<'a> {
            $(#[doc = $doc] pub $name: field_type!($how),)*
        }

        impl RequestRecord<'_> {
            /// Appends the record as one JSON object, keys in table order, written directly
            /// (a line per request is on the hot path; this is about twice as fast as serde).
            pub fn write_json(&self, out: &mut Vec<u8>, names: weir_config::AccessLogNames) {
                let otel = names == weir_config::AccessLogNames::Otel;
                let start = out.len();
                $(json_field!(
                    out,
                    if otel { concat!(",\"", $otel, "\":") } else { concat!(",\"", stringify!($name), "\":") },
                    $how,
                    self.$name
                );)*
                // Every key came with a leading comma: the first one's becomes the brace.
                match out.get_mut(start) {
                    Some(b) => *b = b'{',
                    None => out.push(b'{'),
                }
                out.push(b'}');
            }

            /// Writes one field, by its access-log name, as text (`-` when absent).
            pub fn write_field(&self, name: &str, out: &mut String) {
                match name {
                    $(stringify!($name) => text_field!(out, $how, self.$name),)*
                    // Templates are validated against the same table; an unknown name
                    // cannot get here.
                    _ => out.push('?'),
                }
            }

            /// The span attributes the table derives from the record (`weir.*`), beside the
            /// tracer's OpenTelemetry ones.
            pub fn span_attributes(&self, mut f: impl FnMut(&'static str, SpanValue<'_>)) {
                $(span_field!(f, $span, $how, self.$name);)*
            }
        }
    };
}

weir_config::access_log_fields!(request_record);

impl<'a> RequestRecord<'a> {
    /// The record of a finished request: what its context says, the status sent (499 when
    /// none was), the response body bytes sent and whether the body finished.
    pub fn of(ctx: &'a RequestCtx, status: u16, bytes_out: u64, completed: bool) -> Self {
        Self {
            ts: rfc3339_millis(ctx.start_wall()),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            trace_id: ctx.trace.map(|t| t.trace_id_hex()),
            span_id: ctx
                .trace
                .and_then(|t| t.spans)
                .map(|s| weir_core::trace_context::hex(&s.server)),
            listener: &ctx.listener,
            client_ip: weir_core::text::ip_string(ctx.client_ip),
            client_port: u64::from(ctx.peer.port()),
            scheme: if ctx.tls { "https" } else { "http" },
            tls_version: ctx.tls_session.as_ref().map(|t| t.version),
            tls_cipher: ctx.tls_session.as_ref().map(|t| t.cipher),
            sni: ctx
                .tls_session
                .as_ref()
                .and_then(|t| t.sni.as_deref())
                .map(str::to_owned),
            proto: weir_core::ctx::version_str(ctx.version),
            method: ctx.method.as_str(),
            host: ctx.host.as_deref(),
            path: ctx.uri.path(),
            query: ctx.uri.query(),
            status: u64::from(status),
            bytes_in: ctx.body.bytes(),
            bytes_out,
            // Known once the response's last bytes are flushed (see the log phase).
            wire_bytes_in: None,
            wire_bytes_out: None,
            duration_ms: millis(weir_core::clock::elapsed(ctx.start)),
            route: ctx.route.as_deref(),
            upstream: ctx.upstream.as_deref(),
            split: ctx.split,
            endpoint: ctx.endpoint.as_deref(),
            upstream_status: u64::from(ctx.upstream_status),
            upstream_proto: ctx.upstream_version.map(weir_core::ctx::version_str),
            upstream_connect_ms: ctx.upstream_connect.map(millis),
            upstream_first_byte_ms: ctx.upstream_first_byte.map(millis),
            tries: u64::from(ctx.tries),
            forward: ctx.forward.map(weir_core::ForwardDecision::as_str),
            denied_by: ctx.denied_by.as_deref(),
            answered_by: ctx.answered_by.as_deref(),
            consumer: ctx.consumer.as_deref(),
            idempotency: ctx.idempotency.map(weir_core::IdempotencyOutcome::as_str),
            compression: ctx.compressed,
            cache: ctx.cache.map(weir_core::CacheOutcome::as_str),
            user_agent: ctx.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            referer: ctx.referer.as_ref().and_then(|v| v.to_str().ok()),
            request_headers: ctx.logged_headers.as_deref().map(|h| &h.request[..]),
            response_headers: ctx.logged_headers.as_deref().map(|h| &h.response[..]),
            error: ctx.error.map(weir_core::ErrorKind::code),
            completed,
        }
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn push_ms(out: &mut String, v: Option<f64>) {
    use std::fmt::Write;
    match v {
        Some(ms) => {
            let _ = write!(out, "{ms}");
        }
        None => out.push('-'),
    }
}

/// `,"name":`, one literal per field (the table's first field, always written, has its
/// comma turned into the object's brace).
fn key(out: &mut Vec<u8>, comma_name_colon: &str) {
    out.extend_from_slice(comma_name_colon.as_bytes());
}

/// Whether `bytes` holds a quote, a backslash or a control character, looked for 16 bytes at a
/// time with no early exit inside the 16, which the compiler turns into a few vector compares
/// (a byte-at-a-time search cost ~7 instructions a byte: 2,400 per JSON log line, most of the
/// line's strings, and nearly every one escapes nothing). The last few bytes are checked in a
/// copy padded with spaces.
fn needs_escape(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn any16(chunk: &[u8; 16]) -> bool {
        chunk.iter().fold(false, |found, &b| {
            found | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    }
    let mut chunks = bytes.chunks_exact(16);
    if chunks
        .by_ref()
        .any(|chunk| <&[u8; 16]>::try_from(chunk).is_ok_and(any16))
    {
        return true;
    }
    let rest = chunks.remainder();
    let mut last = [b' '; 16];
    last[..rest.len()].copy_from_slice(rest);
    any16(&last)
}

/// A JSON string: copied as is unless it holds a quote, a backslash or a control character.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if u32::from(c) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let n = u32::from(c) as usize;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[n >> 4]);
                    out.push(HEX[n & 15]);
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(weir_core::text::u64_digits(n, &mut buf));
}

/// Milliseconds with microsecond precision (the record's resolution), e.g. `1.234`.
fn json_ms(out: &mut Vec<u8>, ms: f64) {
    if !ms.is_finite() || ms < 0.0 {
        out.push(b'0');
        return;
    }
    // Rounded to whole microseconds by adding a half and truncating (`f64::round` is a libm
    // call); the fraction's point and three digits go out in one copy.
    let micros = (ms * 1000.0 + 0.5) as u64;
    json_u64(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Formats a time as `2026-11-22T10:04:05.123Z`. The date-and-second part is computed once
/// per second per thread (a log line needs it per request).
pub fn rfc3339_millis(t: SystemTime) -> String {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let mut out = String::with_capacity(24);
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, weir_core::text::civil_second(secs));
        }
        out.push_str(&cached.1);
    });
    out.push('.');
    weir_core::text::push_padded(&mut out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn milliseconds_are_written_with_three_decimals() {
        let ms = |v: f64| {
            let mut out = Vec::new();
            json_ms(&mut out, v);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(ms(0.0), "0.000");
        assert_eq!(ms(0.0004), "0.000");
        assert_eq!(ms(0.0006), "0.001");
        assert_eq!(ms(1.5), "1.500");
        assert_eq!(ms(12.3456), "12.346");
        assert_eq!(ms(999.9996), "1000.000");
        assert_eq!(ms(86_400_000.25), "86400000.250");
        assert_eq!(ms(-1.0), "0");
        assert_eq!(ms(f64::NAN), "0");
        assert_eq!(ms(f64::INFINITY), "0");
        // What `{:.3}` writes, for values away from a rounding tie.
        for i in 0..2000u32 {
            let v = f64::from(i) * 0.731 + 0.0001;
            assert_eq!(ms(v), format!("{v:.3}"), "{v}");
        }
    }

    #[test]
    fn the_escape_search_finds_what_a_byte_by_byte_search_finds() {
        let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        // Every length around the 16-byte steps, with each kind of byte at every position
        // (and the bytes next to the ones searched for: 0x1f/0x20, '!'/'#', '['/']').
        for len in 0..=49 {
            let clean = vec![b'a'; len];
            assert!(!needs_escape(&clean), "len {len}");
            for at in 0..len {
                for (byte, escapes) in [
                    (b'"', true),
                    (b'\\', true),
                    (0x00, true),
                    (0x1f, true),
                    (b'\n', true),
                    (0x20, false),
                    (b'!', false),
                    (b'#', false),
                    (b'[', false),
                    (b']', false),
                    (0x7f, false),
                    (0xc3, false),
                ] {
                    let mut bytes = clean.clone();
                    bytes[at] = byte;
                    assert_eq!(
                        needs_escape(&bytes),
                        escapes,
                        "len {len}, {byte:#x} at {at}"
                    );
                    assert_eq!(needs_escape(&bytes), slow(&bytes));
                }
            }
        }
        let mut out = Vec::new();
        json_str(&mut out, "0123456789abcdef0123\"x");
        assert_eq!(out, b"\"0123456789abcdef0123\\\"x\"");
    }

    fn sample() -> RequestRecord<'static> {
        RequestRecord {
            ts: "2026-11-22T10:00:00.000Z".into(),
            request_id: "id",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
            listener: "main",
            client_ip: "::1".into(),
            client_port: 50123,
            scheme: "https",
            tls_version: Some("TLSv1.3"),
            tls_cipher: Some("TLS13_AES_128_GCM_SHA256"),
            sni: None,
            proto: "HTTP/2.0",
            method: "POST",
            host: None,
            path: "/a\"b\\c\u{1}\té",
            query: Some("q=1"),
            status: 503,
            bytes_in: 12,
            bytes_out: 0,
            wire_bytes_in: Some(80),
            wire_bytes_out: None,
            duration_ms: 1.234,
            route: Some("r"),
            upstream: None,
            split: None,
            endpoint: Some("10.0.0.1:80"),
            upstream_status: 503,
            upstream_proto: Some("HTTP/1.1"),
            upstream_connect_ms: Some(0.012),
            upstream_first_byte_ms: None,
            tries: 2,
            forward: None,
            denied_by: Some("per-ip"),
            answered_by: None,
            consumer: Some("acme"),
            idempotency: None,
            compression: None,
            cache: None,
            user_agent: Some("curl/8.5.0"),
            referer: None,
            request_headers: None,
            response_headers: None,
            error: Some("upstream_timeout"),
            completed: false,
        }
    }

    #[test]
    fn json_keys_follow_the_table_and_absent_values_are_null_or_left_out() {
        let mut r = sample();
        let mut out = Vec::new();
        r.write_json(&mut out, weir_config::AccessLogNames::Flat);
        let expected = concat!(
            r#"{"ts":"2026-11-22T10:00:00.000Z","request_id":"id","#,
            r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","listener":"main","#,
            r#""client_ip":"::1","client_port":50123,"scheme":"https","tls_version":"TLSv1.3","#,
            r#""tls_cipher":"TLS13_AES_128_GCM_SHA256","proto":"HTTP/2.0","method":"POST","host":null,"#,
            r#""path":"/a\"b\\c\u0001\té","query":"q=1","status":503,"bytes_in":12,"#,
            r#""bytes_out":0,"wire_bytes_in":80,"duration_ms":1.234,"route":"r","upstream":null,"#,
            r#""endpoint":"10.0.0.1:80","upstream_status":503,"upstream_proto":"HTTP/1.1","#,
            r#""upstream_connect_ms":0.012,"tries":2,"#,
            r#""denied_by":"per-ip","consumer":"acme","user_agent":"curl/8.5.0","#,
            r#""error":"upstream_timeout","#,
            r#""completed":false}"#
        );
        assert_eq!(String::from_utf8(out).expect("utf8"), expected);
        // The other way round for every optional field.
        r.span_id = Some("00f067aa0ba902b7".into());
        r.trace_id = None;
        r.upstream_connect_ms = None;
        r.upstream_first_byte_ms = Some(2.5);
        r.tries = 0;
        r.forward = Some("allowed");
        r.cache = Some("hit");
        r.sni = Some("api.example.com".into());
        r.referer = Some("https://example.com/");
        r.upstream_status = 0;
        r.completed = true;
        r.duration_ms = 1000.0;
        let mut out = Vec::new();
        r.write_json(&mut out, weir_config::AccessLogNames::Flat);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            !keys.contains(&"trace_id") && !keys.contains(&"tries"),
            "{keys:?}"
        );
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["upstream_first_byte_ms"], 2.5);
        assert_eq!(v["forward"], "allowed");
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["sni"], "api.example.com");
        assert_eq!(v["referer"], "https://example.com/");
        assert!(!keys.contains(&"upstream_status"), "{keys:?}");
        assert_eq!(v["duration_ms"], 1000.0);
        assert_eq!(v["completed"], true);
    }

    #[test]
    fn every_table_field_has_a_template_value_and_the_span_gets_the_weir_attributes() {
        let r = sample();
        for name in weir_config::log_format::ACCESS_LOG_FIELDS {
            let mut out = String::new();
            r.write_field(name, &mut out);
            assert_ne!(out, "?", "{name}");
        }
        let mut attrs = Vec::new();
        r.span_attributes(|k, v| attrs.push((k, format!("{v:?}"))));
        assert_eq!(
            attrs,
            [
                ("weir.request_id", "Str(\"id\")".to_owned()),
                ("weir.listener", "Str(\"main\")".to_owned()),
                ("tls.protocol.version", "Str(\"TLSv1.3\")".to_owned()),
                ("tls.cipher", "Str(\"TLS13_AES_128_GCM_SHA256\")".to_owned()),
                ("weir.upstream.address", "Str(\"10.0.0.1:80\")".to_owned()),
                ("weir.upstream.status", "Int(503)".to_owned()),
                ("weir.upstream.protocol", "Str(\"HTTP/1.1\")".to_owned()),
                ("weir.upstream.tries", "Int(2)".to_owned()),
                ("weir.denied_by", "Str(\"per-ip\")".to_owned()),
                ("weir.consumer", "Str(\"acme\")".to_owned()),
                ("user_agent.original", "Str(\"curl/8.5.0\")".to_owned()),
            ]
        );
    }

    #[test]
    fn formats_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        // Expected values checked with `date -u -d @SECONDS`.
        assert_eq!(rfc3339_millis(t), "2026-11-18T11:06:40.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
