//! OpenTelemetry: `traceparent` continued or started, propagated upstream with Weir's span as
//! parent, and spans exported over OTLP/gRPC to a real tonic collector (`weir_testkit::otlp`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use weir_testkit::otlp::{collector, Collector};

use crate::common::*;

fn tracing_section(collector: SocketAddr, ratio: &str) -> String {
    format!(
        "admin = {{ bind = \"127.0.0.1:0\" }}\n[tracing]\notlp_endpoint = \"http://{collector}\"\nsampling_ratio = {ratio}\nservice_name = \"weir-test\"\nbatch_delay = \"20ms\"\n"
    )
}

fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn echo_headers(
    c: &reqwest::Client,
    gw: &Gateway,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut req = c.get(gw.url("/traced?q=1"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.expect("json")["headers"].clone()
}

/// A collector, an echo origin and a gateway tracing to the collector at `ratio`.
async fn traced(ratio: &str) -> (Collector, Origin, Gateway) {
    let (collector, at) = collector().await;
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], &tracing_section(at, ratio))).await;
    (collector, o, gw)
}

async fn flush(gw: &Gateway) {
    gw.server
        .as_ref()
        .expect("server")
        .flush_traces(Duration::from_secs(5))
        .await;
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn callers_trace_is_continued_new_traces_started_and_spans_exported() {
    let (collector, o, gw) = traced("1.0").await;
    let c = client();

    // 1. A caller's trace: continued, with Weir's upstream span as the upstream's parent.
    let seen = echo_headers(
        &c,
        &gw,
        &[
            ("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01")),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    let tp = seen["traceparent"].as_str().expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    let upstream_parent = parts[2].to_owned();
    assert_ne!(
        upstream_parent, CALLER_SPAN,
        "Weir's span is the parent, not the caller's"
    );
    assert_eq!(
        seen["tracestate"], "vendor=opaque",
        "tracestate passes through"
    );

    // 2. No caller trace (and a stray tracestate): a new trace starts; the stray state is dropped.
    let seen = echo_headers(&c, &gw, &[("tracestate", "stray=1")]).await;
    let tp2 = seen["traceparent"].as_str().expect("traceparent upstream");
    let new_trace = tp2.split('-').nth(1).expect("trace id").to_owned();
    assert_eq!(new_trace.len(), 32);
    assert_ne!(new_trace, TRACE);
    assert!(seen.get("tracestate").is_none(), "{seen}");

    // 3. An invalid traceparent is treated as none.
    let seen = echo_headers(&c, &gw, &[("traceparent", "00-zz-nope-01")]).await;
    let tp3 = seen["traceparent"].as_str().expect("traceparent upstream");
    assert!(!tp3.contains("zz"), "{tp3}");

    flush(&gw).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 6, "a server and a client span per request");
    assert!(spans.iter().all(|(service, _)| service == "weir-test"));

    let of_trace: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| hex(&s.trace_id) == TRACE)
        .collect();
    assert_eq!(of_trace.len(), 2);
    let server = of_trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    let client_span = of_trace
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("client span");
    // Parent/child: caller → Weir server span → Weir client span → upstream.
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(client_span.parent_span_id, server.span_id);
    assert_eq!(hex(&client_span.span_id), upstream_parent);
    assert!(server.start_time_unix_nano <= client_span.start_time_unix_nano);
    assert!(client_span.start_time_unix_nano <= client_span.end_time_unix_nano);
    assert_eq!(server.name, "GET to-up");

    let a = attrs(server);
    for (k, v) in [
        ("http.request.method", "GET"),
        ("http.route", "to-up"),
        ("http.response.status_code", "200"),
        ("url.path", "/traced"),
        ("url.query", "q=1"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
        ("client.address", "127.0.0.1"),
        ("weir.upstream", "up"),
        ("weir.upstream.tries", "1"),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k} in {a:?}");
    }
    assert_eq!(a["weir.upstream.address"], o.addr.to_string());
    let a = attrs(client_span);
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["server.port"], o.addr.port().to_string());
    assert_eq!(a["http.response.status_code"], "200");
    assert!(!a.contains_key("http.request.resend_count"));

    // The new trace's server span has no parent.
    let root = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| hex(&s.trace_id) == new_trace && s.kind == SpanKind::Server as i32)
        .expect("new trace's server span");
    assert!(root.parent_span_id.is_empty());

    // The access log carries the trace and span ids.
    let lines = gw.log_lines().await;
    let first = lines
        .iter()
        .find(|l| l["trace_id"] == TRACE)
        .expect("log line with the caller's trace id");
    assert_eq!(first["span_id"], hex(&server.span_id));

    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(&m, "weir_trace_spans_total{result=\"exported\"}"),
        Some(6.0),
        "{m}"
    );
}

#[tokio::test]
async fn sampling_follows_the_caller_and_the_ratio() {
    let (collector, origin, gw) = traced("0.0").await;
    let c = client();
    // Unsampled caller: propagated with the flag off, nothing exported.
    let seen = echo_headers(
        &c,
        &gw,
        &[("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-00"))],
    )
    .await;
    let tp = seen["traceparent"].as_str().expect("traceparent");
    assert!(
        tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    // New traces at ratio 0: propagated, unsampled.
    for _ in 0..20 {
        let seen = echo_headers(&c, &gw, &[]).await;
        assert!(seen["traceparent"]
            .as_str()
            .is_some_and(|t| t.ends_with("-00")));
    }
    // A sampled caller that is not a trusted proxy is not followed: a client cannot force
    // its requests to be traced. Its trace is still continued, unsampled.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let sampled = format!("00-{other}-b7ad6b7169203331-01");
    for _ in 0..20 {
        let seen = echo_headers(&c, &gw, &[("traceparent", &sampled)]).await;
        let tp = seen["traceparent"].as_str().expect("traceparent");
        assert!(
            tp.starts_with(&format!("00-{other}-")) && tp.ends_with("-00"),
            "{tp}"
        );
    }
    flush(&gw).await;
    assert_eq!(
        collector.spans().len(),
        0,
        "an untrusted caller forced tracing"
    );

    // From a trusted proxy, a sampled caller is followed (parent-based) even at ratio 0.
    let (collector, at) = weir_testkit::otlp::collector().await;
    let trusted = format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n{}",
        tracing_section(at, "0.0")
    );
    let gw = gateway(&config(&[origin.addr], &trusted)).await;
    echo_headers(&c, &gw, &[("traceparent", &sampled)]).await;
    flush(&gw).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "only the sampled caller's request");
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) == other));
}

#[tokio::test]
async fn retries_are_attributes_and_export_failures_are_counted() {
    // The collector address is a closed port: exports fail and are counted.
    let dead_collector = closed_addr();
    let (collector, at) = collector().await;
    let o = echo_origin().await;
    let dead = closed_addr();
    // Round robin over a dead and a live endpoint: every other request's first try fails to
    // connect and is retried on the live one.
    let gw = gateway(&config(&[dead, o.addr], &tracing_section(at, "1.0"))).await;
    let c = client();
    for _ in 0..4 {
        echo_headers(&c, &gw, &[]).await;
    }
    flush(&gw).await;
    let spans = collector.spans();
    let retried: Vec<HashMap<String, String>> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .map(|(_, s)| attrs(s))
        .filter(|a| a.contains_key("http.request.resend_count"))
        .collect();
    assert!(!retried.is_empty(), "{spans:?}");
    for a in &retried {
        assert_eq!(a["http.request.resend_count"], "1");
        assert_eq!(
            a["server.port"],
            o.addr.port().to_string(),
            "the endpoint that answered"
        );
    }

    let gw2 = gateway(&config(&[o.addr], &tracing_section(dead_collector, "1.0"))).await;
    echo_headers(&c, &gw2, &[]).await;
    flush(&gw2).await;
    let m = metrics(&gw2).await;
    assert!(
        metric_value(&m, "weir_trace_spans_total{result=\"failed\"}").is_some_and(|n| n >= 2.0),
        "{m}"
    );
}

#[tokio::test]
async fn spans_reach_a_tls_collector_verified_by_its_ca_with_the_configured_metadata() {
    let pki = crate::tls::Pki::new();
    pki.server("collector", &["127.0.0.1"]);
    let mut tls = crate::upstream_protocols::server_config(&pki, "collector", false);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let at = listener.local_addr().expect("addr");
    let serving = collector.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, serving) = (acceptor.clone(), serving.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    serving.serve_connection(stream).await;
                }
            });
        }
    });
    let o = echo_origin().await;
    let section = |tls: &str| {
        format!(
            "admin = {{ bind = \"127.0.0.1:0\" }}\n[tracing]\notlp_endpoint = \"https://{at}\"\nsampling_ratio = 1.0\nbatch_delay = \"20ms\"\n{tls}otlp_headers = {{ \"x-api-key\" = \"k-123\" }}\n"
        )
    };
    // The system's roots do not know the test CA: nothing is exported, the failure counted.
    let untrusted = gateway(&config(&[o.addr], &section(""))).await;
    assert_eq!(get_status(&untrusted, "/a").await, 200);
    flush(&untrusted).await;
    assert_eq!(collector.count(), 0);
    let m = metrics(&untrusted).await;
    assert!(
        metric_value(&m, "weir_trace_spans_total{result=\"failed\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    // With the collector's CA: exported over TLS, with the metadata.
    let ca = pki.path("ca.pem").display().to_string();
    let trusted = gateway(&config(
        &[o.addr],
        &section(&format!("otlp_tls = {{ ca = \"{ca}\" }}\n")),
    ))
    .await;
    assert_eq!(get_status(&trusted, "/b").await, 200);
    flush(&trusted).await;
    assert_eq!(collector.count(), 2, "the server and the client span");
    let metadata = collector.metadata();
    assert!(!metadata.is_empty());
    assert!(metadata
        .iter()
        .all(|h| h.get("x-api-key").is_some_and(|v| v == "k-123")));
}
