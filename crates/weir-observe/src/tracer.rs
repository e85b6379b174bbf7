//! OpenTelemetry traces: the sampling decision when a request arrives, two spans per sampled
//! request (the SERVER span of the request and the CLIENT span of its upstream call) built from
//! the context the log phase already holds, and a batching OTLP/gRPC exporter on its own task.
//!
//! The request path does no more than draw two span ids and, for the sampled share, build the
//! span messages once at the end; a full queue drops spans (counted) rather than wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use weir_core::text::ip_string;
use weir_core::trace_context::{new_span_id, new_trace_id, Spans};
use weir_core::{RequestCtx, TraceContext, Traceparent};

use crate::prometheus::{Exposition, Kind};
use crate::record::{RequestRecord, SpanValue};

/// Span counters, kept in the metrics registry so they outlive reloads.
#[derive(Debug, Default)]
pub struct TraceStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl TraceStats {
    /// Writes `weir_trace_spans_total{result}`.
    pub fn render(&self, e: &mut Exposition) {
        let labels = [
            [("result", "exported")],
            [("result", "dropped")],
            [("result", "failed")],
        ];
        let values = [&self.exported, &self.dropped, &self.failed];
        e.family(
            "weir_trace_spans_total",
            Kind::Counter,
            "Finished spans by fate: exported, dropped (queue full) or failed (export error).",
            labels
                .iter()
                .zip(values)
                .map(|(l, n)| (&l[..], n.load(Ordering::Relaxed) as f64)),
        );
    }
}

#[derive(Debug)]
enum Msg {
    Span(Box<Span>),
    Flush(oneshot::Sender<()>),
}

/// Where and how spans are exported.
#[derive(Debug, Clone)]
struct ExportSettings {
    endpoint: String,
    /// TLS for an `https://` endpoint (none: the system's roots).
    tls: Option<weir_config::UpstreamTls>,
    /// gRPC metadata sent with every export.
    headers: Vec<(String, String)>,
    service_name: String,
    batch_size: usize,
    batch_delay: Duration,
    export_timeout: Duration,
}

/// Decides which requests are traced and exports their spans.
#[derive(Debug)]
pub struct Tracer {
    /// Sampled when the trace id's low 63 bits fall below this (OpenTelemetry's
    /// `TraceIdRatioBased`, so every hop with the same ratio agrees).
    ratio_bound: u64,
    ratio_all: bool,
    parent_based: bool,
    trust_any: bool,
    tx: mpsc::Sender<Msg>,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    settings: ExportSettings,
    stats: Arc<TraceStats>,
}

impl Tracer {
    /// A tracer for validated settings. Spans queue until [`Tracer::start`] runs the exporter.
    pub fn new(cfg: &weir_config::Tracing, stats: Arc<TraceStats>) -> Self {
        let (tx, rx) = mpsc::channel(cfg.max_queue.max(1));
        let ratio = cfg.sampling_ratio.clamp(0.0, 1.0);
        Self {
            // `as` saturates; 2^63 × ratio fits.
            ratio_bound: (ratio * 9_223_372_036_854_775_808.0) as u64,
            ratio_all: ratio >= 1.0,
            parent_based: cfg.parent_based,
            trust_any: cfg.trust_incoming == weir_config::TrustIncoming::Any,
            tx,
            rx: Mutex::new(Some(rx)),
            settings: ExportSettings {
                endpoint: cfg.otlp_endpoint.clone(),
                tls: cfg.otlp_tls.clone(),
                headers: cfg
                    .otlp_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
                service_name: cfg.service_name.clone(),
                batch_size: cfg.batch_size.max(1),
                batch_delay: cfg.batch_delay.get(),
                export_timeout: cfg.export_timeout.get(),
            },
            stats,
        }
    }

    /// Starts the exporter task (once; later calls do nothing). Needs a tokio runtime.
    pub fn start(&self) {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            tokio::spawn(export_loop(rx, self.settings.clone(), self.stats.clone()));
        }
    }

    /// The trace of a request that just arrived: the caller's trace continued, or a new one.
    /// `trusted_peer`: the connection comes from `trusted_proxies`; only then (or with
    /// `trust_incoming = "any"`) is the caller's sampled flag followed. An untrusted caller
    /// also chooses its trace id, so its sampling is a fresh draw, never the id's bits.
    pub fn begin(&self, incoming: Option<Traceparent>, trusted_peer: bool) -> TraceContext {
        let trace_id = incoming.map_or_else(new_trace_id, |p| p.trace_id);
        let trusted = trusted_peer || self.trust_any;
        let sampled = match incoming {
            Some(p) if self.parent_based && trusted => p.sampled,
            Some(_) if !trusted => self.ratio_all || fastrand::u64(..) >> 1 < self.ratio_bound,
            _ => self.ratio_all || trace_id_low(&trace_id) >> 1 < self.ratio_bound,
        };
        TraceContext {
            trace_id,
            parent_id: incoming.map(|p| p.parent_id),
            spans: Some(Spans {
                server: new_span_id(),
                upstream: new_span_id(),
            }),
            sampled,
        }
    }

    /// Whether a request's spans are exported (it carries a sampled trace with Weir's
    /// spans): only then does [`Tracer::finish`] need its record.
    pub fn samples(&self, ctx: &RequestCtx) -> bool {
        ctx.trace.is_some_and(|t| t.sampled && t.spans.is_some())
    }

    /// Queues the spans of a finished request (if it was sampled), with the `weir.*`
    /// attributes its record derives from the access-log field table.
    pub fn finish(&self, ctx: &RequestCtx, record: &RequestRecord<'_>) {
        let Some(trace) = ctx.trace.filter(|t| t.sampled) else {
            return;
        };
        let (status, bytes_out) = (u16::try_from(record.status).unwrap_or(0), record.bytes_out);
        let Some(spans) = trace.spans else { return };
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let wall =
            |at: Instant| unix_nanos(now_wall.checked_sub(now.saturating_duration_since(at)));
        let end = unix_nanos(Some(now_wall));
        let error_type = ctx
            .error
            .map(|e| e.code().to_owned())
            .or_else(|| (status >= 500).then(|| status.to_string()));

        let mut server = Span {
            trace_id: trace.trace_id.to_vec(),
            span_id: spans.server.to_vec(),
            parent_span_id: trace.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 1,
            name: match &ctx.route {
                Some(route) => format!("{} {route}", ctx.method),
                None => ctx.method.to_string(),
            },
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: wall(ctx.start),
            end_time_unix_nano: end,
            ..Default::default()
        };
        let a = &mut server.attributes;
        a.push(kv("http.request.method", ctx.method.as_str()));
        a.push(kv("url.scheme", if ctx.tls { "https" } else { "http" }));
        a.push(kv("url.path", ctx.uri.path()));
        if let Some(q) = ctx.uri.query() {
            a.push(kv("url.query", q));
        }
        if let Some(route) = &ctx.route {
            a.push(kv("http.route", route));
        }
        a.push(kv_int("http.response.status_code", i64::from(status)));
        a.push(kv("network.protocol.name", "http"));
        a.push(kv(
            "network.protocol.version",
            match ctx.version {
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2",
                _ => "1.1",
            },
        ));
        if let Some(host) = &ctx.host {
            a.push(kv("server.address", host));
        }
        a.push(kv("client.address", &ip_string(ctx.client_ip)));
        a.push(kv("network.peer.address", &ip_string(ctx.peer.ip())));
        a.push(kv_int("network.peer.port", i64::from(ctx.peer.port())));
        a.push(kv_int(
            "http.request.body.size",
            i64::try_from(ctx.body.bytes()).unwrap_or(i64::MAX),
        ));
        a.push(kv_int(
            "http.response.body.size",
            i64::try_from(bytes_out).unwrap_or(i64::MAX),
        ));
        record.span_attributes(|name, value| {
            a.push(match value {
                SpanValue::Str(s) => kv(name, s),
                SpanValue::Int(n) => kv_int(name, n),
            })
        });
        if let Some(t) = &error_type {
            a.push(kv("error.type", t));
        }
        if status >= 500 {
            server.status = Some(Status {
                code: status::StatusCode::Error as i32,
                message: error_type.clone().unwrap_or_default(),
            });
        }

        let client = ctx.upstream_start.map(|start| {
            let mut client = Span {
                trace_id: trace.trace_id.to_vec(),
                span_id: spans.upstream.to_vec(),
                parent_span_id: spans.server.to_vec(),
                flags: 1,
                name: ctx.method.to_string(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: wall(start),
                end_time_unix_nano: end,
                ..Default::default()
            };
            let a = &mut client.attributes;
            a.push(kv("http.request.method", ctx.method.as_str()));
            if let Some(ep) = &ctx.endpoint {
                let (addr, port) = split_host_port(ep);
                a.push(kv("server.address", addr));
                if let Some(port) = port {
                    a.push(kv_int("server.port", i64::from(port)));
                }
            }
            if ctx.tries > 1 {
                a.push(kv_int(
                    "http.request.resend_count",
                    i64::from(ctx.tries - 1),
                ));
            }
            if ctx.error.is_none() {
                a.push(kv_int("http.response.status_code", i64::from(status)));
            }
            if let Some(up) = &ctx.upstream {
                a.push(kv("weir.upstream", up));
            }
            if let Some(t) = &error_type {
                a.push(kv("error.type", t));
            }
            if ctx.error.is_some() || status >= 400 {
                client.status = Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: error_type.clone().unwrap_or_default(),
                });
            }
            client
        });
        for span in client.into_iter().chain(std::iter::once(server)) {
            if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Exports everything queued so far; returns when the export finished or `timeout` passed.
    pub async fn flush(&self, timeout: Duration) {
        let (ack, done) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(timeout, flushed).await;
    }
}

fn trace_id_low(id: &[u8; 16]) -> u64 {
    let mut low = [0u8; 8];
    low.copy_from_slice(&id[8..]);
    u64::from_be_bytes(low)
}

fn unix_nanos(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn split_host_port(endpoint: &str) -> (&str, Option<u16>) {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => match port.parse() {
            Ok(p) => (host.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            Err(_) => (endpoint, None),
        },
        _ => (endpoint, None),
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

async fn export_loop(
    mut rx: mpsc::Receiver<Msg>,
    settings: ExportSettings,
    stats: Arc<TraceStats>,
) {
    let channel = match channel(&settings) {
        Ok(c) => c,
        Err(e) => {
            // Validation checks the URL and loads the TLS files first, so this means a file
            // changed since; spans are dropped (and counted) rather than sent in the clear.
            tracing::error!(endpoint = %settings.endpoint, error = %e, "OTLP exporter cannot start; spans are dropped");
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Span(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
                    Msg::Flush(ack) => {
                        let _ = ack.send(());
                        0
                    }
                };
            }
            return;
        }
    };
    let metadata: Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)> = settings
        .headers
        .iter()
        .filter_map(|(k, v)| Some((MetadataKey::from_bytes(k.as_bytes()).ok()?, v.parse().ok()?)))
        .collect();
    let mut client = TraceServiceClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
            for (k, v) in &metadata {
                req.metadata_mut().insert(k.clone(), v.clone());
            }
            Ok(req)
        },
    );
    let resource = Resource {
        attributes: vec![
            kv("service.name", &settings.service_name),
            kv("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    };
    let mut batch: Vec<Span> = Vec::with_capacity(settings.batch_size);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    while open {
        // Wait for the first span (or a flush), then fill the batch until it is full or the
        // first span has waited `batch_delay`.
        match rx.recv().await {
            Some(Msg::Span(s)) => batch.push(*s),
            Some(Msg::Flush(ack)) => acks.push(ack),
            None => open = false,
        }
        let deadline = tokio::time::Instant::now() + settings.batch_delay;
        while open && acks.is_empty() && batch.len() < settings.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Span(s))) => batch.push(*s),
                Ok(Some(Msg::Flush(ack))) => acks.push(ack),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let spans = std::mem::replace(&mut batch, Vec::with_capacity(settings.batch_size));
            let n = spans.len() as u64;
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "weir".to_owned(),
                            version: env!("CARGO_PKG_VERSION").to_owned(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            match client.export(request).await {
                Ok(_) => stats.exported.fetch_add(n, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(endpoint = %settings.endpoint, spans = n, error = %e, "OTLP export failed");
                    stats.failed.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// The exporter's gRPC channel: plaintext for `http://`, TLS for `https://` (the configured CA,
/// or the system's roots; SNI; a client certificate).
fn channel(settings: &ExportSettings) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut endpoint = tonic::transport::Endpoint::from_shared(settings.endpoint.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(settings.export_timeout)
        .timeout(settings.export_timeout);
    if settings.endpoint.starts_with("https://") {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
        };
        let tls = settings.tls.clone().unwrap_or_default();
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_native_roots(),
        };
        if let Some(sni) = &tls.sni {
            config = config.domain_name(sni.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(config).map_err(|e| e.to_string())?;
    }
    Ok(endpoint.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64, parent_based: bool) -> weir_config::Tracing {
        let src = format!(
            "[[listeners]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsampling_ratio = {ratio:?}\nparent_based = {parent_based}\n"
        );
        weir_config::parse(&src, "t.toml")
            .expect("valid")
            .tracing
            .expect("tracing")
    }

    #[test]
    fn ratio_samples_about_that_share_of_new_traces() {
        let tracer = Tracer::new(&settings(0.1, true), Arc::default());
        let sampled = (0..20_000)
            .filter(|_| tracer.begin(None, false).sampled)
            .count();
        assert!((1_700..2_300).contains(&sampled), "{sampled} of 20000");
        let none = Tracer::new(&settings(0.0, true), Arc::default());
        assert!((0..1000).all(|_| !none.begin(None, false).sampled));
        let all = Tracer::new(&settings(1.0, true), Arc::default());
        assert!((0..1000).all(|_| all.begin(None, false).sampled));
    }

    #[test]
    fn parent_based_follows_the_callers_flag() {
        let parent = Traceparent {
            trace_id: [7; 16],
            parent_id: [9; 8],
            sampled: true,
        };
        let follows = Tracer::new(&settings(0.0, true), Arc::default());
        let t = follows.begin(Some(parent), true);
        assert!(t.sampled);
        assert_eq!(t.trace_id, [7; 16]);
        assert_eq!(t.parent_id, Some([9; 8]));
        let own = Tracer::new(&settings(0.0, false), Arc::default());
        assert!(!own.begin(Some(parent), true).sampled);
        // From an untrusted peer the flag is not followed, but the trace is continued.
        let t = follows.begin(Some(parent), false);
        assert!(!t.sampled);
        assert_eq!(t.trace_id, [7; 16]);
    }

    #[test]
    fn endpoints_split_into_address_and_port() {
        assert_eq!(split_host_port("10.0.0.1:80"), ("10.0.0.1", Some(80)));
        assert_eq!(split_host_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_host_port("name"), ("name", None));
    }
}
