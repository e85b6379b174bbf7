//! The one record every request ends in.

use std::time::SystemTime;

use serde::Serialize;

/// What happened to one request. Field names are the access log's JSON keys.
#[derive(Debug, Serialize)]
pub struct RequestRecord<'a> {
    /// Time the request arrived, RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// W3C trace id (32 hex digits): the caller's, or the one Weir started; absent when no
    /// `traceparent` came in and tracing is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Weir's server span id, when Weir traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Listener name.
    pub listener: &'a str,
    /// Client address (after trusted-proxy resolution).
    pub client_ip: String,
    /// `HTTP/1.1`, `HTTP/2.0` …
    pub proto: &'a str,
    /// Method.
    pub method: &'a str,
    /// Host (lowercase, no port), if any.
    pub host: Option<&'a str>,
    /// Path as received, without the query.
    pub path: &'a str,
    /// Query string, if any.
    pub query: Option<&'a str>,
    /// Status sent; 499 when the client went away before a response.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Milliseconds from request head to the end of the response body.
    pub duration_ms: f64,
    /// Matched route.
    pub route: Option<&'a str>,
    /// Upstream name.
    pub upstream: Option<&'a str>,
    /// Upstream endpoint address (of the last try).
    pub endpoint: Option<&'a str>,
    /// Milliseconds the last upstream try spent getting a connection (≈0 when pooled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_connect_ms: Option<f64>,
    /// Milliseconds from sending upstream to the response head (last try).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_first_byte_ms: Option<f64>,
    /// Upstream tries (1 + retries); omitted when the request was not proxied.
    #[serde(skip_serializing_if = "is_zero")]
    pub tries: u32,
    /// A forward proxy's decision (`allowed` / `denied`); absent on reverse listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<&'a str>,
    /// The policy that answered the request itself (403, 429 …), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<&'a str>,
    /// Who the request is from (an identity policy's consumer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<&'a str>,
    /// What an idempotency policy did (`stored`, `replayed`, `conflict` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<&'a str>,
    /// The content coding Weir compressed the response with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'a str>,
    /// What the route's cache did (`hit`, `miss`, `stale`, `revalidated` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'a str>,
    /// Error code, when the request failed (`upstream_timeout` …).
    pub error: Option<&'a str>,
    /// False when the response body did not finish (client gone, upstream reset).
    pub completed: bool,
}

impl RequestRecord<'_> {
    /// Appends the record as one JSON object — the same keys, order and values as its
    /// `Serialize` form, written directly: a line per request is on the hot path, and this is
    /// about twice as fast as going through serde.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        key(out, "ts", true);
        json_str(out, &self.ts);
        key(out, "request_id", false);
        json_str(out, self.request_id);
        if let Some(t) = &self.trace_id {
            key(out, "trace_id", false);
            json_str(out, t);
        }
        if let Some(s) = &self.span_id {
            key(out, "span_id", false);
            json_str(out, s);
        }
        key(out, "listener", false);
        json_str(out, self.listener);
        key(out, "client_ip", false);
        json_str(out, &self.client_ip);
        key(out, "proto", false);
        json_str(out, self.proto);
        key(out, "method", false);
        json_str(out, self.method);
        key(out, "host", false);
        json_opt(out, self.host);
        key(out, "path", false);
        json_str(out, self.path);
        key(out, "query", false);
        json_opt(out, self.query);
        key(out, "status", false);
        json_u64(out, u64::from(self.status));
        key(out, "bytes_in", false);
        json_u64(out, self.bytes_in);
        key(out, "bytes_out", false);
        json_u64(out, self.bytes_out);
        key(out, "duration_ms", false);
        json_ms(out, self.duration_ms);
        key(out, "route", false);
        json_opt(out, self.route);
        key(out, "upstream", false);
        json_opt(out, self.upstream);
        key(out, "endpoint", false);
        json_opt(out, self.endpoint);
        if let Some(ms) = self.upstream_connect_ms {
            key(out, "upstream_connect_ms", false);
            json_ms(out, ms);
        }
        if let Some(ms) = self.upstream_first_byte_ms {
            key(out, "upstream_first_byte_ms", false);
            json_ms(out, ms);
        }
        if self.tries != 0 {
            key(out, "tries", false);
            json_u64(out, u64::from(self.tries));
        }
        if let Some(f) = self.forward {
            key(out, "forward", false);
            json_str(out, f);
        }
        if let Some(p) = self.denied_by {
            key(out, "denied_by", false);
            json_str(out, p);
        }
        if let Some(c) = self.consumer {
            key(out, "consumer", false);
            json_str(out, c);
        }
        if let Some(i) = self.idempotency {
            key(out, "idempotency", false);
            json_str(out, i);
        }
        if let Some(c) = self.compression {
            key(out, "compression", false);
            json_str(out, c);
        }
        if let Some(c) = self.cache {
            key(out, "cache", false);
            json_str(out, c);
        }
        key(out, "error", false);
        json_opt(out, self.error);
        key(out, "completed", false);
        out.extend_from_slice(if self.completed { b"true" } else { b"false" });
        out.push(b'}');
    }

    /// Writes one field, by its access-log name, as text (`-` when absent).
    pub fn write_field(&self, name: &str, out: &mut String) {
        use std::fmt::Write;
        fn opt(out: &mut String, v: Option<&str>) {
            out.push_str(v.unwrap_or("-"));
        }
        fn opt_ms(out: &mut String, v: Option<f64>) {
            match v {
                Some(ms) => {
                    let _ = write!(out, "{ms}");
                }
                None => out.push('-'),
            }
        }
        match name {
            "ts" => out.push_str(&self.ts),
            "request_id" => out.push_str(self.request_id),
            "trace_id" => opt(out, self.trace_id.as_deref()),
            "span_id" => opt(out, self.span_id.as_deref()),
            "listener" => out.push_str(self.listener),
            "client_ip" => out.push_str(&self.client_ip),
            "proto" => out.push_str(self.proto),
            "method" => out.push_str(self.method),
            "host" => opt(out, self.host),
            "path" => out.push_str(self.path),
            "query" => opt(out, self.query),
            "status" => {
                let _ = write!(out, "{}", self.status);
            }
            "bytes_in" => {
                let _ = write!(out, "{}", self.bytes_in);
            }
            "bytes_out" => {
                let _ = write!(out, "{}", self.bytes_out);
            }
            "duration_ms" => opt_ms(out, Some(self.duration_ms)),
            "route" => opt(out, self.route),
            "upstream" => opt(out, self.upstream),
            "endpoint" => opt(out, self.endpoint),
            "upstream_connect_ms" => opt_ms(out, self.upstream_connect_ms),
            "upstream_first_byte_ms" => opt_ms(out, self.upstream_first_byte_ms),
            "tries" => {
                let _ = write!(out, "{}", self.tries);
            }
            "forward" => opt(out, self.forward),
            "denied_by" => opt(out, self.denied_by),
            "consumer" => opt(out, self.consumer),
            "idempotency" => opt(out, self.idempotency),
            "compression" => opt(out, self.compression),
            "cache" => opt(out, self.cache),
            "error" => opt(out, self.error),
            "completed" => out.push_str(if self.completed { "true" } else { "false" }),
            // Templates are validated against the same list; an unknown name cannot get here.
            _ => out.push('?'),
        }
    }
}

fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON string: copied as is unless it holds a quote, a backslash or a control character.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
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
    let micros = (ms * 1000.0).round() as u64;
    json_u64(out, micros / 1000);
    out.push(b'.');
    let frac = micros % 1000;
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + ((frac / 10) % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            *cached = (secs, civil_second(secs));
        }
        out.push_str(&cached.1);
    });
    out.push('.');
    weir_core::text::push_padded(&mut out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
    out
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time.
fn civil_second(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn direct_json_equals_the_serde_form() {
        let mut r = RequestRecord {
            ts: "2026-11-22T10:00:00.000Z".into(),
            request_id: "id",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
            listener: "main",
            client_ip: "::1".into(),
            proto: "HTTP/2.0",
            method: "POST",
            host: None,
            path: "/a\"b\\c\u{1}\té",
            query: Some("q=1"),
            status: 503,
            bytes_in: 12,
            bytes_out: 0,
            duration_ms: 1.234,
            route: Some("r"),
            upstream: None,
            endpoint: Some("10.0.0.1:80"),
            upstream_connect_ms: Some(0.012),
            upstream_first_byte_ms: None,
            tries: 2,
            forward: None,
            denied_by: Some("per-ip"),
            consumer: Some("acme"),
            idempotency: None,
            compression: None,
            cache: None,
            error: Some("upstream_timeout"),
            completed: false,
        };
        for _ in 0..2 {
            let mut direct = Vec::new();
            r.write_json(&mut direct);
            let direct: serde_json::Value = serde_json::from_slice(&direct).expect("valid JSON");
            let serde = serde_json::to_value(&r).expect("serde");
            assert_eq!(direct, serde);
            // And the other way round for every optional field.
            r.span_id = Some("00f067aa0ba902b7".into());
            r.trace_id = None;
            r.upstream_connect_ms = None;
            r.upstream_first_byte_ms = Some(2.5);
            r.tries = 0;
            r.forward = Some("allowed");
            r.completed = true;
            r.duration_ms = 1000.0;
        }
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
