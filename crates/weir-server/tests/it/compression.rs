//! On-the-fly compression through real sockets: the coding negotiated by q-values, bodies that
//! decode to the original (fixed and streamed), and every case that must be left alone.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncReadExt;

use crate::common::*;

fn page() -> String {
    (0..400)
        .map(|i| format!("<p>line {i} of a page that compresses well</p>\n"))
        .collect()
}

/// An origin whose response depends on the path: `/page` (HTML), `/small`, `/png`, `/encoded`
/// (already gzip), `/sse`, `/no-transform`, `/stream` (chunked, in three parts).
async fn content_origin() -> Origin {
    origin(|req: Request<Incoming>| async move {
        let b = Response::builder();
        match req.uri().path() {
            "/page" => b
                .header("content-type", "text/html; charset=utf-8")
                .header("etag", "\"v1\"")
                .body(full(page())),
            "/small" => b.header("content-type", "text/plain").body(full("tiny")),
            "/png" => b.header("content-type", "image/png").body(full(page())),
            "/encoded" => b
                .header("content-type", "text/plain")
                .header("content-encoding", "gzip")
                .body(full(page())),
            "/sse" => b
                .header("content-type", "text/event-stream")
                .body(full(page())),
            "/no-transform" => b
                .header("content-type", "text/plain")
                .header("cache-control", "public, no-transform")
                .body(full(page())),
            "/stream" => {
                let parts: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..3)
                    .map(|i| {
                        Ok(http_body::Frame::data(Bytes::from(format!(
                            "{}{i}",
                            page()
                        ))))
                    })
                    .collect();
                let body = http_body_util::StreamBody::new(futures_util::stream::iter(parts));
                b.header("content-type", "application/json").body(
                    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                        .boxed_unsync(),
                )
            }
            _ => b.status(404).body(full("")),
        }
        .expect("response")
    })
    .await
}

async fn decode(coding: &str, bytes: &[u8]) -> String {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    let mut out = Vec::new();
    match coding {
        "gzip" => GzipDecoder::new(bytes).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(bytes).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(bytes).read_to_end(&mut out).await,
        other => panic!("unexpected coding {other}"),
    }
    .expect("decodes");
    String::from_utf8(out).expect("utf8")
}

async fn fetch(gw: &Gateway, path: &str, accept: Option<&str>) -> (u16, http::HeaderMap, Bytes) {
    let mut r = client().get(gw.url(path));
    if let Some(a) = accept {
        r = r.header("accept-encoding", a);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body"))
}

fn config(origin: std::net::SocketAddr) -> String {
    guarded_config(origin, "", "", "", "compress = { min_size = \"1KiB\" }")
}

#[tokio::test]
async fn responses_are_compressed_by_accept_encoding_and_decode_to_the_original() {
    let o = content_origin().await;
    let gw = gateway(&config(o.addr)).await;
    for (accept, want) in [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("gzip, br, zstd", "zstd"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, *;q=0.1", "zstd"),
    ] {
        let (status, h, body) = fetch(&gw, "/page", Some(accept)).await;
        assert_eq!(status, 200);
        assert_eq!(h["content-encoding"], want, "{accept}");
        assert!(
            h.get("content-length").is_none()
                || h["content-length"] == body.len().to_string().as_str()
        );
        assert_eq!(h["vary"], "accept-encoding");
        assert_eq!(
            h["etag"], "W/\"v1\"",
            "a compressed representation has a weak validator"
        );
        assert!(
            body.len() < page().len() / 4,
            "{want}: {} bytes",
            body.len()
        );
        assert_eq!(decode(want, &body).await, page());
    }
    // Streamed (chunked) bodies too.
    let (_, h, body) = fetch(&gw, "/stream", Some("gzip")).await;
    assert_eq!(h["content-encoding"], "gzip");
    let expected: String = (0..3).map(|i| format!("{}{i}", page())).collect();
    assert_eq!(decode("gzip", &body).await, expected);
    // Nothing acceptable: as is, but still Vary.
    for accept in [None, Some("identity"), Some("*;q=0"), Some("deflate")] {
        let (_, h, body) = fetch(&gw, "/page", accept).await;
        assert!(h.get("content-encoding").is_none(), "{accept:?}");
        assert_eq!(h["vary"], "accept-encoding");
        assert_eq!(h["etag"], "\"v1\"");
        assert_eq!(body, page().as_bytes());
    }
    // Counted as each response ends.
    let m = wait_for_metric(
        &gw,
        "weir_compression_responses_total{encoding=\"gzip\"}",
        3.0,
    )
    .await;
    assert_eq!(
        metric_value(&m, "weir_compression_responses_total{encoding=\"gzip\"}"),
        Some(3.0)
    );
    assert!(
        metric_value(&m, "weir_compression_bytes_total{direction=\"in\"}").unwrap_or(0.0) > 0.0
    );
    let lines = gw.log_lines().await;
    assert!(lines.iter().any(|l| l["compression"] == "zstd"));
}

#[tokio::test]
async fn what_must_not_be_compressed_is_left_alone() {
    let o = content_origin().await;
    let gw = gateway(&config(o.addr)).await;
    for path in ["/small", "/png", "/encoded", "/sse", "/no-transform"] {
        let (status, h, body) = fetch(&gw, path, Some("gzip, br, zstd")).await;
        assert_eq!(status, 200, "{path}");
        let encoding = h
            .get("content-encoding")
            .map(|v| v.to_str().expect("ascii").to_owned());
        if path == "/encoded" {
            assert_eq!(
                encoding.as_deref(),
                Some("gzip"),
                "the origin's own coding stays"
            );
        } else {
            assert_eq!(encoding, None, "{path}");
        }
        let original = if path == "/small" {
            "tiny".to_owned()
        } else {
            page()
        };
        assert_eq!(body, original.as_bytes(), "{path}");
    }
    // HEAD gets the headers a GET would, and no body.
    let r = client()
        .head(gw.url("/page"))
        .header("accept-encoding", "br")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["content-encoding"], "br");
    assert_eq!(r.bytes().await.expect("body").len(), 0);
}
