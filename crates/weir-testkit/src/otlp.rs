//! An OTLP/gRPC trace collector: the real trace service (tonic, `opentelemetry-proto`'s
//! generated server) on a local port, keeping every span it receives or only counting them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;

/// What a collector received.
#[derive(Clone, Default)]
pub struct Collector {
    /// Spans with their resource's `service.name` (unless counting only).
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    /// The gRPC metadata of each export request.
    metadata: Arc<Mutex<Vec<http::HeaderMap>>>,
    count: Arc<AtomicU64>,
    count_only: bool,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.metadata().clone().into_headers());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                self.count
                    .fetch_add(ss.spans.len() as u64, Ordering::Relaxed);
                if self.count_only {
                    continue;
                }
                let mut kept = self.spans.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// A collector that only counts spans (for load runs).
    pub fn counting() -> Self {
        Self {
            count_only: true,
            ..Self::default()
        }
    }

    /// Spans received so far, with their `service.name`.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The gRPC metadata of each export request received so far.
    pub fn metadata(&self) -> Vec<http::HeaderMap> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Spans received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Serves the trace service (h2c) on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(self.clone().serve_connection(tcp));
        }
    }

    /// Serves the trace service (HTTP/2) on one connection: a TCP stream, or a TLS stream the
    /// caller accepted.
    pub async fn serve_connection<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let svc = TraceServiceServer::new(self);
        let svc = hyper::service::service_fn(move |req| {
            let mut svc = svc.clone();
            async move {
                Ok::<_, Infallible>(
                    tonic::codegen::Service::call(&mut svc, req)
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .http2_only()
            .serve_connection(TokioIo::new(io), svc)
            .await;
    }
}

/// A collector keeping every span, on a free port.
pub async fn collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(collector.clone().serve(listener));
    (collector, addr)
}
