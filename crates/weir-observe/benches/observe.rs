//! What observability costs per request, piece by piece: writing one access-log line (JSON and
//! a template), recording a route's metrics, and the tracer's per-request work (begin, and
//! finish for an unsampled request).
//!
//! `cargo bench -p weir-observe --bench observe`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use weir_observe::{LogFormat, MetricsRegistry, RequestRecord};

fn record() -> RequestRecord<'static> {
    RequestRecord {
        ts: weir_observe::rfc3339_millis(SystemTime::now()),
        request_id: "0b6f4c1a9e2d4f7a8c3b5e6d7f8a9b0c",
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        span_id: Some("00f067aa0ba902b7".into()),
        listener: "main",
        client_ip: "203.0.113.17".into(),
        proto: "HTTP/1.1",
        method: "GET",
        host: Some("api.example.com"),
        path: "/v1/orders/12345",
        query: Some("expand=items"),
        status: 200,
        bytes_in: 0,
        bytes_out: 1024,
        duration_ms: 1.234,
        route: Some("orders"),
        upstream: Some("orders"),
        endpoint: Some("10.0.3.17:8080"),
        upstream_connect_ms: Some(0.012),
        upstream_first_byte_ms: Some(0.987),
        tries: 1,
        completed: true,
        ..RequestRecord::default()
    }
}

fn bench(c: &mut Criterion) {
    let r = record();
    c.bench_function("access_log_line_json", |b| {
        b.iter(|| black_box(LogFormat::default().line(black_box(&r))))
    });
    let template = LogFormat::from_config(
        "$client_ip - [$ts] \"$method $path\" $status $bytes_out $duration_ms $route $endpoint $trace_id",
        weir_config::AccessLogNames::Flat,
    );
    c.bench_function("access_log_line_template", |b| {
        b.iter(|| black_box(template.line(black_box(&r))))
    });
    c.bench_function("access_log_timestamp", |b| {
        b.iter(|| black_box(weir_observe::rfc3339_millis(SystemTime::now())))
    });
    let registry = MetricsRegistry::default();
    let route = registry.route("orders");
    c.bench_function("route_metrics_record", |b| {
        b.iter(|| {
            route.record(
                black_box(&Method::GET),
                black_box(200),
                black_box(Duration::from_micros(850)),
                0,
                1024,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
