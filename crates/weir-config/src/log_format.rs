//! The access log's template syntax: text with `$name` / `${name}` fields and `$$` for a literal
//! `$`. Parsed here, once, so `weir check` and the running log agree on what is valid.

/// The access log's fields, one line each: the name (the JSON key and the template
/// variable), how its value is written, the trace span attribute it also becomes (`_`: none
/// beyond the tracer's OpenTelemetry ones), its JSON key under `names = "otel"` (OpenTelemetry
/// semantic conventions where one exists, `weir.*` otherwise), and what it is. This table is the only list of
/// request facts the log carries: it generates [`ACCESS_LOG_FIELDS`] (what `weir check`
/// accepts in a template) here, and `weir-observe`'s `RequestRecord` (its fields, the JSON
/// writer, the template writer and the span attributes) there.
///
/// How a value is written (JSON; in a template, absent values are `-`):
/// `text`/`owned` a string; `maybe` a string or `null`; `omitted`/`omitted_owned` a string,
/// the key left out when absent; `int` a number; `count` a number, left out when 0; `ms`
/// milliseconds with microsecond precision; `omitted_ms` the same, left out when absent;
/// `flag` `true`/`false`; `headers` an object of the listed headers present, the key left out
/// when none are listed.
#[macro_export]
macro_rules! access_log_fields {
    ($then:ident) => {
        $then! {
            ts: owned, _, "timestamp", "Time the request arrived, RFC 3339 UTC with milliseconds.";
            request_id: text, "weir.request_id", "weir.request_id", "`X-Request-Id`, incoming or generated.";
            trace_id: omitted_owned, _, "trace_id", "W3C trace id (32 hex digits): the caller's, or the one Weir started.";
            span_id: omitted_owned, _, "span_id", "Weir's server span id, when Weir traces.";
            listener: text, "weir.listener", "weir.listener", "Listener name.";
            client_ip: owned, _, "client.address", "Client address (after trusted-proxy resolution).";
            client_port: int, _, "network.peer.port", "TCP source port of the connection (a trusted proxy's, when one forwarded the request).";
            scheme: text, _, "url.scheme", "`http` or `https`: whether the request arrived over TLS.";
            tls_version: omitted, "tls.protocol.version", "tls.protocol.version", "`TLSv1.2` or `TLSv1.3`, on TLS connections.";
            tls_cipher: omitted, "tls.cipher", "tls.cipher", "The negotiated cipher suite (IANA name), on TLS connections.";
            sni: omitted_owned, "tls.server.name", "tls.client.server_name", "The server name the client sent in its TLS handshake.";
            proto: text, _, "weir.protocol", "`HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`.";
            method: text, _, "http.request.method", "Method.";
            host: maybe, _, "server.address", "Host (lowercase, no port), if any.";
            path: text, _, "url.path", "Path as received, without the query.";
            query: maybe, _, "url.query", "Query string, if any.";
            status: int, _, "http.response.status_code", "Status sent; 499 when the client went away before a response.";
            bytes_in: int, _, "http.request.body.size", "Request body bytes received.";
            bytes_out: int, _, "http.response.body.size", "Response body bytes sent.";
            wire_bytes_in: omitted_int, _, "http.request.size", "Bytes of the request on the wire: request line, headers, body and its chunked framing (HTTP/1.x; on TLS the HTTP bytes inside it, as nginx's `$request_length`). Left out on HTTP/2, whose streams share one connection's frames.";
            wire_bytes_out: omitted_int, _, "http.response.size", "Bytes of the response on the wire: status line, headers, body and its framing, interim responses included (HTTP/1.x, as nginx's `$bytes_sent`; the record is written once they are flushed). Left out on HTTP/2.";
            duration_ms: ms, _, "weir.duration_ms", "Milliseconds from request head to the end of the response body.";
            route: maybe, _, "http.route", "Matched route.";
            upstream: maybe, "weir.upstream", "weir.upstream", "Upstream name (on a split route, the version the request went to).";
            split: omitted, "weir.split", "weir.split", "How a split route chose its upstream: `override` (a tester's header or cookie), `sticky` (the sticky key) or `weight` (drawn by weight).";
            endpoint: maybe, "weir.upstream.address", "weir.upstream.address", "Upstream endpoint address (of the last try).";
            upstream_status: count, "weir.upstream.status", "weir.upstream.status", "Status the upstream answered (last try); left out when none answered.";
            upstream_proto: omitted, "weir.upstream.protocol", "weir.upstream.protocol", "HTTP version of the upstream leg (`HTTP/1.1`, `HTTP/2.0`), when one answered.";
            upstream_connect_ms: omitted_ms, _, "weir.upstream.connect_ms", "Milliseconds the last upstream try spent getting a connection.";
            upstream_first_byte_ms: omitted_ms, _, "weir.upstream.first_byte_ms", "Milliseconds from sending upstream to the response head (last try).";
            tries: count, "weir.upstream.tries", "weir.upstream.tries", "Upstream tries (1 + retries); left out when not proxied.";
            forward: omitted, "weir.forward", "weir.forward", "A forward proxy's decision (`allowed`, `denied`).";
            denied_by: omitted, "weir.denied_by", "weir.denied_by", "The policy that refused the request (401, 403, 429 …).";
            answered_by: omitted, "weir.answered_by", "weir.answered_by", "The policy that answered the request itself without refusing it (a CORS preflight, an idempotent replay).";
            consumer: omitted, "weir.consumer", "weir.consumer", "Who the request is from (an identity policy's consumer).";
            idempotency: omitted, "weir.idempotency", "weir.idempotency", "What an idempotency policy did (`stored`, `replayed`, `conflict` …).";
            compression: omitted, "weir.compression", "weir.compression", "The content coding Weir compressed the response with.";
            cache: omitted, "weir.cache", "weir.cache", "What the route's cache did (`hit`, `miss`, `stale`, `revalidated` …).";
            user_agent: omitted, "user_agent.original", "user_agent.original", "The request's `User-Agent`, when it is visible ASCII.";
            referer: omitted, "http.request.header.referer", "http.request.header.referer", "The request's `Referer`, when it is visible ASCII.";
            request_headers: headers, _, "http.request.header", "The request headers `[access_log] headers.request` lists, as the client sent them: `{name: value}` (a template: `name=value …`).";
            response_headers: headers, _, "http.response.header", "The response headers `[access_log] headers.response` lists, as Weir sent them.";
            error: maybe, _, "error.type", "Error code, when the request failed (`upstream_timeout` …).";
            completed: flag, _, "weir.completed", "False when the response body did not finish (client gone, upstream reset).";
        }
    };
}

macro_rules! field_names {
    ($($name:ident: $how:ident, $span:tt, $otel:literal, $doc:literal;)*) => {
        /// Every field an access-log template may name (the JSON log's keys), in table order.
        pub const ACCESS_LOG_FIELDS: &[&str] = &[$(stringify!($name)),*];
    };
}

access_log_fields!(field_names);

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSegment {
    /// Literal text.
    Text(String),
    /// A field, by name (one of [`ACCESS_LOG_FIELDS`]).
    Field(&'static str),
}

/// Parses a template; an error carries the byte offset of the problem and what it is.
pub fn parse_log_format(template: &str) -> Result<Vec<LogSegment>, (usize, String)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = template.char_indices().peekable();
    while let Some((at, c)) = rest.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let braced = match rest.peek() {
            Some((_, '$')) => {
                rest.next();
                text.push('$');
                continue;
            }
            Some((_, '{')) => {
                rest.next();
                true
            }
            _ => false,
        };
        let mut name = String::new();
        while let Some(&(_, n)) = rest.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                rest.next();
            } else {
                break;
            }
        }
        if braced && rest.next().map(|(_, c)| c) != Some('}') {
            return Err((at, "`${` without a closing `}`".to_owned()));
        }
        if name.is_empty() {
            return Err((
                at,
                "`$` without a field name (write `$$` for a literal `$`)".to_owned(),
            ));
        }
        let Some(field) = ACCESS_LOG_FIELDS.iter().find(|f| **f == name) else {
            return Err((
                at,
                format!(
                    "unknown field `{name}`; fields: {}",
                    ACCESS_LOG_FIELDS.join(", ")
                ),
            ));
        };
        if !text.is_empty() {
            out.push(LogSegment::Text(std::mem::take(&mut text)));
        }
        out.push(LogSegment::Field(field));
    }
    if !text.is_empty() {
        out.push(LogSegment::Text(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_text_and_escapes() {
        let parsed = parse_log_format("$method ${path}?x $$5 [$status]").expect("valid");
        assert_eq!(
            parsed,
            vec![
                LogSegment::Field("method"),
                LogSegment::Text(" ".into()),
                LogSegment::Field("path"),
                LogSegment::Text("?x $5 [".into()),
                LogSegment::Field("status"),
                LogSegment::Text("]".into()),
            ]
        );
    }

    #[test]
    fn errors_point_at_the_dollar() {
        assert_eq!(parse_log_format("ok $nope").map_err(|e| e.0), Err(3));
        assert_eq!(parse_log_format("${path").map_err(|e| e.0), Err(0));
        assert_eq!(parse_log_format("a $ b").map_err(|e| e.0), Err(2));
    }
}
