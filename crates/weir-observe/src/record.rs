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
    /// Error code, when the request failed (`upstream_timeout` …).
    pub error: Option<&'a str>,
    /// False when the response body did not finish (client gone, upstream reset).
    pub completed: bool,
}

impl RequestRecord<'_> {
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
            "error" => opt(out, self.error),
            "completed" => out.push_str(if self.completed { "true" } else { "false" }),
            // Templates are validated against the same list; an unknown name cannot get here.
            _ => out.push('?'),
        }
    }
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
