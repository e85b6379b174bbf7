//! Writing a request: its head, framed by Weir (never by the fields the client sent); its body
//! goes as `Content-Length` bytes or chunks through [`crate::h1_wire`].

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::Method;
use http_body::Body as _;

use crate::added::AddedFields;
use crate::h1_wire::Framing;
use crate::RequestBody;

/// How a body of this shape is framed.
pub(crate) fn framing_of(body: &RequestBody) -> Framing {
    if body.is_end_stream() {
        Framing::Empty
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else {
        Framing::Chunked
    }
}

/// The request head as written: request line (origin form), fields (the map's, then `added`),
/// framing; and whether it carries an `Upgrade` (seen as the fields are written: no lookup in
/// the map).
pub(crate) fn head(parts: &Parts, added: &AddedFields, framing: Framing) -> (Bytes, bool) {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = &parts.method;
    // Room for a typical head at once (no pass over the fields to size it; a larger head grows
    // the buffer as it is written).
    let fields = parts.headers.len() + added.len();
    let mut buf = BytesMut::with_capacity(target.len() + fields * 48 + 128);
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    let mut upgrade = false;
    for (name, value) in parts.headers.iter().chain(added.iter()) {
        // The framing is Weir's: what the client declared was checked on the way in and is
        // written again below from the body itself.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        upgrade |= name == UPGRADE;
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    match framing {
        Framing::Empty | Framing::Close => {
            // Methods whose requests carry a body say that this one is empty.
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                buf.put_slice(b"content-length: 0\r\n");
            }
        }
        Framing::Length(n) => {
            buf.put_slice(b"content-length: ");
            buf.put_slice(n.to_string().as_bytes());
            buf.put_slice(b"\r\n");
        }
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.put_slice(b"\r\n");
    (buf.freeze(), upgrade)
}
