//! Writing a response head: the body's framing decided here from the request, the status and
//! the body, never trusted from fields alone. The body goes as `Content-Length` bytes, chunks
//! or bytes until close through `weir_core::h1_wire`.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body::SizeHint;
use weir_core::h1_wire::ConnectionTokens;
pub(super) use weir_core::h1_wire::Framing;

/// What the response head depends on besides the response.
pub(super) struct Exchange {
    pub(super) method: Method,
    pub(super) version: Version,
    /// In: the connection may carry another request; out: it will.
    pub(super) keep_alive: bool,
    /// The response opens a tunnel (its fields go as they are, no body).
    pub(super) tunnel: bool,
}

/// Encodes the status line and fields into `scratch` and returns them with the body's framing.
/// Framing fields are Weir's: `Content-Length` is kept only when it is a single valid length
/// (else set from a body of known size), `Transfer-Encoding` is written only as `chunked`, and
/// `Connection` says what the connection will do. One pass to read the fields that decide
/// this, one to write: the map itself is not edited.
pub(super) fn head(
    scratch: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    hint: &SizeHint,
    ex: &mut Exchange,
) -> (Bytes, Framing) {
    // `None`: no `Content-Length`; `Some(None)`: one that cannot be used.
    let mut declared: Option<Option<u64>> = None;
    let mut has_date = false;
    let mut tokens = ConnectionTokens::default();
    for (name, value) in headers {
        if *name == CONTENT_LENGTH {
            declared = Some(match declared {
                None => weir_core::body::length_value(value.as_bytes()),
                Some(_) => None,
            });
        } else if *name == CONNECTION {
            tokens.note(value.as_bytes());
        } else if *name == DATE {
            has_date = true;
        }
    }
    if tokens.close {
        ex.keep_alive = false;
    }
    // What is written besides the fields: `keep_length` keeps the response's own
    // `Content-Length`, `length` adds one.
    let (framing, keep_length, length) =
        if ex.tunnel || status.is_informational() || status == StatusCode::NO_CONTENT {
            (Framing::Empty, false, None)
        } else if status == StatusCode::NOT_MODIFIED || ex.method == Method::HEAD {
            // The fields describe the body a GET would get; none follows.
            (Framing::Empty, true, None)
        } else {
            match (declared, hint.exact()) {
                (Some(Some(n)), _) => (Framing::Length(n), true, None),
                (_, Some(n)) => (Framing::Length(n), false, Some(n)),
                (_, None) if ex.version == Version::HTTP_11 => (Framing::Chunked, false, None),
                (_, None) => {
                    ex.keep_alive = false;
                    (Framing::Close, false, None)
                }
            }
        };
    // Room for a typical head at once (no pass over the fields to size it; a larger head
    // grows the buffer as it is written).
    scratch.reserve(headers.len() * 48 + 256);
    scratch.put_slice(b"HTTP/1.1 ");
    scratch.put_slice(status.as_str().as_bytes());
    scratch.put_u8(b' ');
    scratch.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    scratch.put_slice(b"\r\n");
    for (name, value) in headers {
        let skip = *name == TRANSFER_ENCODING
            || (*name == CONTENT_LENGTH && !keep_length)
            || (*name == CONNECTION && !ex.tunnel);
        if skip {
            continue;
        }
        scratch.put_slice(name.as_str().as_bytes());
        scratch.put_slice(b": ");
        scratch.put_slice(value.as_bytes());
        scratch.put_slice(b"\r\n");
    }
    if let Some(n) = length {
        scratch.put_slice(b"content-length: ");
        // `BytesMut` is a `fmt::Write`: the digits go straight in.
        let _ = std::fmt::Write::write_fmt(scratch, format_args!("{n}\r\n"));
    }
    if !has_date {
        scratch.put_slice(b"date: ");
        scratch.put_slice(super::super::io::date().as_bytes());
        scratch.put_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        scratch.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if !ex.tunnel {
        if !ex.keep_alive {
            scratch.put_slice(b"connection: close\r\n");
        } else if ex.version == Version::HTTP_10 {
            scratch.put_slice(b"connection: keep-alive\r\n");
        }
    }
    scratch.put_slice(b"\r\n");
    (scratch.split().freeze(), framing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        status: u16,
        fields: &[(&str, &str)],
        hint: SizeHint,
        method: Method,
        version: Version,
    ) -> (String, Framing, bool) {
        let mut headers = HeaderMap::new();
        for (n, v) in fields {
            headers.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        headers.insert(DATE, http::HeaderValue::from_static("x"));
        let mut ex = Exchange {
            method,
            version,
            keep_alive: true,
            tunnel: false,
        };
        let (bytes, framing) = head(
            &mut BytesMut::new(),
            StatusCode::from_u16(status).expect("status"),
            &headers,
            &hint,
            &mut ex,
        );
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            framing,
            ex.keep_alive,
        )
    }

    #[test]
    fn framing_comes_from_the_body_and_the_request() {
        let (h, f, keep) = encode(
            200,
            &[],
            SizeHint::with_exact(5),
            Method::GET,
            Version::HTTP_11,
        );
        assert_eq!(f, Framing::Length(5));
        assert!(keep && h.contains("content-length: 5\r\n"), "{h}");
        let (h, f, _) = encode(
            200,
            &[("transfer-encoding", "gzip")],
            SizeHint::default(),
            Method::GET,
            Version::HTTP_11,
        );
        assert_eq!(f, Framing::Chunked);
        assert!(
            h.contains("transfer-encoding: chunked\r\n") && !h.contains("gzip"),
            "{h}"
        );
        let (h, f, keep) = encode(200, &[], SizeHint::default(), Method::GET, Version::HTTP_10);
        assert_eq!(f, Framing::Close);
        assert!(!keep && h.contains("connection: close\r\n"), "{h}");
        let (h, f, _) = encode(
            200,
            &[("content-length", "10")],
            SizeHint::with_exact(0),
            Method::HEAD,
            Version::HTTP_11,
        );
        assert_eq!(f, Framing::Empty);
        assert!(h.contains("content-length: 10\r\n"), "{h}");
        let (h, f, _) = encode(
            204,
            &[("content-length", "3")],
            SizeHint::default(),
            Method::GET,
            Version::HTTP_11,
        );
        assert_eq!(f, Framing::Empty);
        assert!(!h.contains("content-length"), "{h}");
        let (h, _, keep) = encode(
            503,
            &[("connection", "close")],
            SizeHint::with_exact(0),
            Method::GET,
            Version::HTTP_11,
        );
        assert!(!keep && h.matches("connection").count() == 1, "{h}");
    }
}
