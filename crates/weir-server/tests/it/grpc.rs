//! gRPC through Weir with a real tonic server and client: unary, server streaming and client
//! streaming calls over HTTP/2 with trailers intact; `grpc-timeout` honoured; errors Weir makes
//! itself reach the client as gRPC statuses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::common::*;

/// Messages are raw bytes: no protobuf code generation needed for the test service.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug, Clone, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Default)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

struct Unary;
impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, Status>> + Send>>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let msg = req.into_inner();
            match &msg[..] {
                // Never answers: only the deadline can end the call.
                b"slow" => std::future::pending().await,
                b"missing" => Err(Status::not_found("no such thing")),
                _ => Ok(Response::new(Bytes::from([&b"echo:"[..], &msg].concat()))),
            }
        })
    }
}

struct ServerStream;
impl tonic::server::ServerStreamingService<Bytes> for ServerStream {
    type Response = Bytes;
    type ResponseStream = BoxStream;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<BoxStream>, Status>> + Send>>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let n: usize = std::str::from_utf8(req.get_ref())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let items =
                futures_util::stream::iter((0..n).map(|i| Ok(Bytes::from(format!("item {i}")))));
            Ok(Response::new(Box::pin(items) as BoxStream))
        })
    }
}

struct ClientStream;
impl tonic::server::ClientStreamingService<Bytes> for ClientStream {
    type Response = Bytes;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, Status>> + Send>>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut count, mut bytes) = (0usize, 0usize);
            while let Some(msg) = stream.next().await {
                let msg = msg?;
                count += 1;
                bytes += msg.len();
            }
            Ok(Response::new(Bytes::from(format!(
                "{count} messages, {bytes} bytes"
            ))))
        })
    }
}

/// A gRPC server (h2c) with the three test methods.
async fn grpc_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let mut grpc = tonic::server::Grpc::new(RawCodec);
                        let resp = match req.uri().path() {
                            "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                            "/test.Echo/ServerStream" => {
                                grpc.server_streaming(ServerStream, req).await
                            }
                            "/test.Echo/ClientStream" => {
                                grpc.client_streaming(ClientStream, req).await
                            }
                            _ => Status::unimplemented("no such method").into_http(),
                        };
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn grpc_config(origin: SocketAddr) -> String {
    TestConfig::new()
        .upstream("grpc", &[origin], "protocol = \"h2c\"")
        .then("[[routes]]\nproxy = { upstream = \"grpc\" }")
        .build()
}

async fn client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to weir");
    tonic::client::Grpc::new(channel)
}

async fn unary(
    c: &mut tonic::client::Grpc<tonic::transport::Channel>,
    req: Request<Bytes>,
) -> Result<Bytes, Status> {
    c.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    c.unary(req, PathAndQuery::from_static("/test.Echo/Unary"), RawCodec)
        .await
        .map(Response::into_inner)
}

#[tokio::test]
async fn unary_server_streaming_and_client_streaming_calls_pass_through() {
    let origin = grpc_origin().await;
    let gw = gateway(&grpc_config(origin)).await;
    let mut c = client(gw.addr).await;

    assert_eq!(
        unary(&mut c, Request::new(Bytes::from("hi")))
            .await
            .expect("unary"),
        "echo:hi"
    );

    // An application error travels in the trailers, untouched.
    let err = unary(&mut c, Request::new(Bytes::from("missing")))
        .await
        .expect_err("not found");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such thing");

    c.ready().await.expect("ready");
    let stream = c
        .server_streaming(
            Request::new(Bytes::from("25")),
            PathAndQuery::from_static("/test.Echo/ServerStream"),
            RawCodec,
        )
        .await
        .expect("server streaming")
        .into_inner();
    let items: Vec<Bytes> = stream.map(|m| m.expect("item")).collect().await;
    assert_eq!(items.len(), 25);
    assert_eq!(items[24], "item 24");

    c.ready().await.expect("ready");
    let outgoing = futures_util::stream::iter((0..10).map(|i| Bytes::from(vec![b'x'; i * 100])));
    let summary = c
        .client_streaming(
            Request::new(outgoing),
            PathAndQuery::from_static("/test.Echo/ClientStream"),
            RawCodec,
        )
        .await
        .expect("client streaming")
        .into_inner();
    assert_eq!(summary, "10 messages, 4500 bytes");
}

#[tokio::test]
async fn grpc_timeout_is_honoured_with_deadline_exceeded() {
    let origin = grpc_origin().await;
    let gw = gateway(&grpc_config(origin)).await;
    // A plain HTTP/2 client that sends `grpc-timeout` but does not enforce it (tonic's own
    // client would), so the deadline seen is Weir's.
    let mut send = h2c_sender(gw.addr).await;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&4u32.to_be_bytes());
    frame.extend_from_slice(b"slow");
    let req = http::Request::post(format!("http://{}/test.Echo/Unary", gw.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(http_body_util::Full::new(Bytes::from(frame)))
        .expect("request");
    // The origin never answers; an answer at all is the deadline's (the bound is generous).
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .expect("Weir waited for the origin")
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "4", "{:?}", resp.headers());
    assert_eq!(resp.headers()["content-type"], "application/grpc");
}

#[tokio::test]
async fn errors_weir_makes_itself_are_grpc_statuses() {
    // No endpoint listening: Weir answers UNAVAILABLE the gRPC way (HTTP 200, grpc-status 14).
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = gateway(&grpc_config(dead)).await;
    let mut c = client(gw.addr).await;
    let err = unary(&mut c, Request::new(Bytes::from("hi")))
        .await
        .expect_err("unavailable");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "upstream unreachable");
}
