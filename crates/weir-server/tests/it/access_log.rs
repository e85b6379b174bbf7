//! One JSON access-log line per request with the fields operators need.

use crate::common::*;

#[tokio::test]
async fn one_line_per_request_with_fields() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let r = client()
        .post(gw.url("/logged?x=1"))
        .header("host", "api.test")
        .header("authorization", "Bearer secret-token")
        .header("user-agent", "weir-test/1.0 (probe)")
        .header("referer", "https://app.test/page")
        .body("12345")
        .send()
        .await
        .expect("request");
    let id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    let body = r.bytes().await.expect("body");
    let lines = gw.log_lines().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["method"], "POST");
    assert_eq!(l["path"], "/logged");
    assert_eq!(l["query"], "x=1");
    assert_eq!(l["host"], "api.test");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes_in"], 5);
    assert_eq!(l["bytes_out"], body.len());
    assert_eq!(l["route"], "to-up");
    assert_eq!(l["upstream"], "up");
    assert_eq!(l["endpoint"], o.addr.to_string());
    assert_eq!(l["tries"], 1);
    assert_eq!(l["user_agent"], "weir-test/1.0 (probe)");
    assert_eq!(l["referer"], "https://app.test/page");
    assert_eq!(l["scheme"], "http");
    assert!(l["client_port"].as_u64().is_some_and(|p| p > 0), "{l}");
    assert_eq!(l["upstream_status"], 200);
    assert_eq!(l["upstream_proto"], "HTTP/1.1");
    // Plaintext: no TLS fields at all (absent fields are left out, never null).
    for absent in [
        "tls_version",
        "tls_cipher",
        "sni",
        "denied_by",
        "answered_by",
    ] {
        assert!(l.get(absent).is_none(), "{absent} in {l}");
    }
    // Timing breakdown of the upstream part.
    let connect = l["upstream_connect_ms"]
        .as_f64()
        .expect("upstream_connect_ms");
    let first_byte = l["upstream_first_byte_ms"]
        .as_f64()
        .expect("upstream_first_byte_ms");
    let total = l["duration_ms"].as_f64().expect("duration_ms");
    // The parts end where the whole does when the response's last byte goes out in the poll
    // that read its head (one clock reading a poll): equal up to each field's own rounding to
    // the microsecond.
    assert!(
        connect >= 0.0 && first_byte >= 0.0 && connect + first_byte <= total + 0.002,
        "{l}"
    );
    assert_eq!(l["request_id"], id.as_str());
    assert_eq!(l["listener"], "main");
    assert_eq!(l["completed"], true);
    assert!(l["duration_ms"].as_f64().is_some());
    assert!(
        !l.to_string().contains("secret-token"),
        "credentials never logged"
    );
}

#[tokio::test]
async fn failed_requests_are_logged_with_their_error() {
    let gw = gateway(&config(&[], "")).await;
    let _ = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["status"], 503);
    assert_eq!(lines[0]["error"], "no_healthy_endpoint");
}

#[tokio::test]
async fn a_template_names_the_fields_and_carries_the_trace_id() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "access_log = { format = \"$method ${path}|$status|$route|$trace_id|$upstream_first_byte_ms|$$\" }",
    ))
    .await;
    let r = client()
        .get(gw.url("/t?secret=1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("cookie", "session=hunter2")
        .send()
        .await
        .expect("request");
    r.bytes().await.expect("body");
    let mut text = String::new();
    for _ in 0..50 {
        gw.server.as_ref().expect("server").flush_access_log();
        text = gw.log.text();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let line = text.lines().next().expect("a line");
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields[0], "GET /t");
    assert_eq!(fields[1], "200");
    assert_eq!(fields[2], "to-up");
    // Tracing is off: the caller's trace id is logged, nothing is exported.
    assert_eq!(fields[3], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(fields[4].parse::<f64>().is_ok(), "{line}");
    assert_eq!(fields[5], "$");
    assert!(!text.contains("hunter2"));
}

#[test]
fn a_template_with_an_unknown_field_is_refused_with_its_place() {
    let toml = config(&[], "access_log = { format = \"$method $nope\" }");
    let err = weir_config::parse(&toml, "weir.toml")
        .expect_err("unknown field")
        .to_string();
    let line = 1 + toml
        .lines()
        .position(|l| l.starts_with("access_log"))
        .expect("the line");
    assert!(err.contains(&format!("weir.toml:{line}:")), "{err}");
    assert!(err.contains("unknown field `nope`"), "{err}");
}

/// `[access_log] headers`: the listed request headers as the client sent them and the listed
/// response headers as Weir sent them, credentials redacted, long values capped.
#[tokio::test]
async fn listed_headers_are_logged_capped_and_redacted() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "access_log = { headers = { request = [\"x-tenant\", \"Authorization\", \"x-long\", \"x-absent\"], response = [\"content-type\", \"x-request-id\"] } }",
    ))
    .await;
    let r = client()
        .get(gw.url("/h"))
        .header("x-tenant", "acme")
        .header("authorization", "Bearer never-logged")
        .header("x-long", "z".repeat(2000))
        .send()
        .await
        .expect("request");
    let id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    r.bytes().await.expect("body");
    let lines = gw.log_lines().await;
    let l = &lines[0];
    let req = &l["request_headers"];
    assert_eq!(req["x-tenant"], "acme", "{l}");
    assert_eq!(req["authorization"], "REDACTED", "{l}");
    assert!(req.get("x-absent").is_none(), "{l}");
    let long = req["x-long"].as_str().expect("x-long");
    assert!(long.len() <= 256 + 3 && long.ends_with('…'), "{long}");
    assert_eq!(l["response_headers"]["x-request-id"], id.as_str(), "{l}");
    assert!(l["response_headers"]["content-type"].is_string(), "{l}");
    assert!(!l.to_string().contains("never-logged"));
}

/// `names = "otel"`: the same record under OpenTelemetry's semantic-convention keys, as the
/// spans carry them.
#[tokio::test]
async fn otel_names_follow_the_semantic_conventions() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "access_log = { names = \"otel\" }")).await;
    let r = client()
        .get(gw.url("/otel?q=1"))
        .header("user-agent", "weir-test")
        .send()
        .await
        .expect("request");
    r.bytes().await.expect("body");
    let lines = gw.log_lines().await;
    let l = &lines[0];
    assert_eq!(l["http.request.method"], "GET", "{l}");
    assert_eq!(l["url.path"], "/otel", "{l}");
    assert_eq!(l["url.query"], "q=1", "{l}");
    assert_eq!(l["url.scheme"], "http", "{l}");
    assert_eq!(l["http.response.status_code"], 200, "{l}");
    assert_eq!(l["client.address"], "127.0.0.1", "{l}");
    assert_eq!(l["http.route"], "to-up", "{l}");
    assert_eq!(l["user_agent.original"], "weir-test", "{l}");
    assert_eq!(l["weir.upstream.status"], 200, "{l}");
    assert!(l["timestamp"].is_string(), "{l}");
    for flat in ["method", "path", "status", "client_ip", "route"] {
        assert!(l.get(flat).is_none(), "{flat} in {l}");
    }
}

/// The sizes of the HTTP/1.1 responses in `bytes`, one after another (each framed by
/// `content-length` or chunked, without trailers).
fn response_sizes(mut bytes: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    while !bytes.is_empty() {
        let head = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head end")
            + 4;
        let text = String::from_utf8_lossy(&bytes[..head]).to_ascii_lowercase();
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse::<usize>().expect("length"));
        let size = match length {
            Some(n) => head + n,
            None => {
                assert!(text.contains("transfer-encoding: chunked"), "{text}");
                let mut at = head;
                loop {
                    let line = bytes[at..]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .expect("chunk line");
                    let n = usize::from_str_radix(
                        std::str::from_utf8(&bytes[at..at + line]).expect("hex"),
                        16,
                    )
                    .expect("chunk size");
                    at += line + 2 + n + 2;
                    if n == 0 {
                        break at;
                    }
                }
            }
        };
        sizes.push(size);
        bytes = &bytes[size..];
    }
    sizes
}

/// Bytes on the wire (HTTP/1.1): each request's own bytes — head, body and chunked framing —
/// and each response's, head included, exactly as a raw client sent and received them, with
/// the three requests pipelined in one write; left out on HTTP/2.
#[tokio::test]
async fn bytes_on_the_wire_per_request() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let requests: [&[u8]; 3] = [
        b"GET /a HTTP/1.1\r\nhost: wire.test\r\n\r\n",
        b"POST /b HTTP/1.1\r\nhost: wire.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
        b"POST /c HTTP/1.1\r\nhost: wire.test\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    ];
    let answer = weir_testkit::raw(gw.addr, &requests.concat()).await;
    let sizes = response_sizes(answer.as_bytes());
    assert_eq!(sizes.len(), 3, "{answer}");
    let lines = gw.log_lines_at_least(3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["wire_bytes_in"], requests[i].len(), "request {i}: {l}");
        assert_eq!(l["wire_bytes_out"], sizes[i], "response {i}: {l}");
        assert!(
            l["wire_bytes_out"].as_u64() > l["bytes_out"].as_u64(),
            "{l}"
        );
    }
}

/// An HPACK header block: the static table's `:scheme http`, then literal fields (name
/// indexed where the static table has it), never Huffman-coded or added to the table.
fn hpack(method: &str, path: &str) -> Vec<u8> {
    let mut out = vec![0x86];
    for (index, value) in [(2u8, method), (4, path), (1, "wire.test")] {
        out.push(index);
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

#[tokio::test]
async fn bytes_on_the_wire_per_http2_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const SETTINGS: u8 = 4;
    const CONTINUATION: u8 = 9;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    // Three streams, their frames interleaved in one write: a GET; a POST whose body comes in
    // two DATA frames; a POST whose header block is split by a CONTINUATION.
    let get = hpack("GET", "/a");
    let post_b = hpack("POST", "/b");
    let post_c = hpack("POST", "/c");
    let frames: [(u32, Vec<u8>); 7] = [
        (1, h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, &get)),
        (3, h2_frame(HEADERS, END_HEADERS, 3, &post_b)),
        (3, h2_frame(DATA, 0, 3, b"hello")),
        (5, h2_frame(HEADERS, 0, 5, &post_c[..6])),
        (5, h2_frame(CONTINUATION, END_HEADERS, 5, &post_c[6..])),
        (3, h2_frame(DATA, END_STREAM, 3, b" world")),
        (5, h2_frame(DATA, END_STREAM, 5, b"abc")),
    ];
    let mut sent = std::collections::HashMap::<u32, usize>::new();
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(h2_frame(SETTINGS, 0, 0, &[]));
    for (stream, f) in &frames {
        *sent.entry(*stream).or_default() += f.len();
        wire.extend_from_slice(f);
    }
    let mut conn = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    conn.write_all(&wire).await.expect("write");
    // Read frames until every stream has ended, crediting each to its stream.
    let mut received = std::collections::HashMap::<u32, usize>::new();
    let mut ended = std::collections::HashSet::new();
    let read = async {
        while ended.len() < 3 {
            let mut head = [0u8; 9];
            conn.read_exact(&mut head).await.expect("frame header");
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            conn.read_exact(&mut payload).await.expect("frame payload");
            if head[3] == SETTINGS && head[4] & 1 == 0 {
                conn.write_all(&h2_frame(SETTINGS, 1, 0, &[]))
                    .await
                    .expect("ack");
            }
            if stream != 0 {
                *received.entry(stream).or_default() += 9 + len;
                if matches!(head[3], DATA | HEADERS) && head[4] & END_STREAM != 0 {
                    ended.insert(stream);
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("three answers");
    let lines = gw.log_lines_at_least(3).await;
    for (path, stream) in [("/a", 1), ("/b", 3), ("/c", 5)] {
        let l = lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no record of {path}: {lines:?}"));
        assert_eq!(l["proto"], "HTTP/2.0", "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["wire_bytes_in"], sent[&stream], "{path}: {l}");
        assert_eq!(l["wire_bytes_out"], received[&stream], "{path}: {l}");
        assert!(
            l["wire_bytes_out"].as_u64() > l["bytes_out"].as_u64(),
            "{l}"
        );
    }
}
