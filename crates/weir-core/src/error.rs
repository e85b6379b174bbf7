//! One error type for everything that can go wrong with a request, and the one mapping from
//! it to a status code and a short, consistent body that carries the request id.

use std::fmt;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{BoxError, ResponseBody};

/// Who is at fault: decides logging level, metrics labels and whether to blame an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Client,
    /// The upstream failed or was too slow.
    Upstream,
    /// Weir itself failed.
    Internal,
}

/// Whether the request may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached the upstream: safe to retry.
    Yes,
    /// The upstream may have acted on the request.
    No,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was malformed.
    BadRequest,
    /// No route matched the request.
    NoRoute,
    /// The file or resource does not exist.
    NotFound,
    /// The method is not allowed for this resource.
    MethodNotAllowed,
    /// The request head was larger than `max_request_header_size`.
    HeaderTooLarge,
    /// The request body was larger than `max_request_body_size`.
    BodyTooLarge,
    /// The client stopped sending its body half way.
    ClientBody,
    /// No TCP connection to the endpoint could be made.
    UpstreamConnect,
    /// Connecting to the upstream, or waiting for its response head, took too long.
    UpstreamTimeout,
    /// The upstream broke the protocol or reset the connection.
    UpstreamProtocol,
    /// The upstream has no endpoint to send to.
    NoEndpoint,
    /// The upstream's circuit breaker is open.
    CircuitOpen,
    /// The upstream is at `max_in_flight` and its queue is full or the wait timed out.
    UpstreamBusy,
    /// A forward proxy's policy does not allow the destination.
    ForwardDenied,
    /// An IP rule refuses the client's address.
    IpDenied,
    /// A `PURGE` from an address the cache's `purge_method` rules do not allow.
    PurgeDenied,
    /// A rate limit refuses the request.
    RateLimited,
    /// A concurrency limit refuses the request.
    TooManyInFlight,
    /// The request carries no credentials, or invalid ones.
    Unauthorized,
    /// The identity is valid but not allowed.
    Forbidden,
    /// An auth service or key set needed to decide could not be reached.
    AuthUnavailable,
    /// A policy's shared store (Redis) failed and its `on_store_error` is `deny`.
    PolicyStoreUnavailable,
    /// `Idempotency-Key` is required but missing (or malformed).
    IdempotencyKeyMissing,
    /// A request with this `Idempotency-Key` is still being processed.
    IdempotencyConflict,
    /// This `Idempotency-Key` was used for a different request.
    IdempotencyMismatch,
    /// Weir is over its request memory budget (`server.request_memory_budget`).
    Overloaded,
    /// A bug or resource failure in Weir.
    Internal,
}

impl ErrorKind {
    /// The response status for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest | ErrorKind::ClientBody => StatusCode::BAD_REQUEST,
            ErrorKind::NoRoute | ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::ForwardDenied | ErrorKind::IpDenied | ErrorKind::PurgeDenied => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::RateLimited | ErrorKind::TooManyInFlight => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::AuthUnavailable | ErrorKind::PolicyStoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::IdempotencyKeyMissing => StatusCode::BAD_REQUEST,
            ErrorKind::IdempotencyConflict => StatusCode::CONFLICT,
            ErrorKind::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::NoEndpoint | ErrorKind::CircuitOpen | ErrorKind::UpstreamBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code, used in bodies, access logs and metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ForwardDenied => "forward_denied",
            ErrorKind::IpDenied => "ip_denied",
            ErrorKind::PurgeDenied => "purge_denied",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::TooManyInFlight => "too_many_in_flight",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::PolicyStoreUnavailable => "policy_store_unavailable",
            ErrorKind::IdempotencyKeyMissing => "idempotency_key_missing",
            ErrorKind::IdempotencyConflict => "idempotency_conflict",
            ErrorKind::IdempotencyMismatch => "idempotency_key_reused",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::HeaderTooLarge => "header_too_large",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::ClientBody => "client_body_error",
            ErrorKind::UpstreamConnect => "upstream_unreachable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamProtocol => "upstream_protocol_error",
            ErrorKind::NoEndpoint => "no_healthy_endpoint",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::UpstreamBusy => "upstream_busy",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Internal => "internal_error",
        }
    }

    /// The short public text; never includes internals.
    pub fn public_message(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "malformed request",
            ErrorKind::NoRoute => "no route matches this request",
            ErrorKind::NotFound => "not found",
            ErrorKind::ForwardDenied => "destination not allowed",
            ErrorKind::IpDenied => "client address not allowed",
            ErrorKind::PurgeDenied => "purge not allowed from this address",
            ErrorKind::RateLimited => "too many requests",
            ErrorKind::TooManyInFlight => "too many requests in flight",
            ErrorKind::Unauthorized => "authentication required",
            ErrorKind::Forbidden => "not allowed",
            ErrorKind::AuthUnavailable => "authorization service unavailable",
            ErrorKind::PolicyStoreUnavailable => "policy store unavailable",
            ErrorKind::IdempotencyKeyMissing => "Idempotency-Key header required",
            ErrorKind::IdempotencyConflict => "a request with this Idempotency-Key is in progress",
            ErrorKind::IdempotencyMismatch => "Idempotency-Key reused for a different request",
            ErrorKind::MethodNotAllowed => "method not allowed",
            ErrorKind::HeaderTooLarge => "request header too large",
            ErrorKind::BodyTooLarge => "request body too large",
            ErrorKind::ClientBody => "request body could not be read",
            ErrorKind::UpstreamConnect => "upstream unreachable",
            ErrorKind::UpstreamTimeout => "upstream timed out",
            ErrorKind::UpstreamProtocol => "upstream sent an invalid response",
            ErrorKind::NoEndpoint => "no upstream endpoint available",
            ErrorKind::CircuitOpen => "upstream temporarily unavailable",
            ErrorKind::UpstreamBusy => "upstream busy",
            ErrorKind::Overloaded => "server overloaded, try again",
            ErrorKind::Internal => "internal error",
        }
    }

    /// The gRPC status code a gRPC client gets for this kind (the HTTP-to-gRPC mapping of the
    /// gRPC spec, refined where Weir knows more: a timeout is `DEADLINE_EXCEEDED`).
    pub fn grpc_status(self) -> u16 {
        match self {
            ErrorKind::UpstreamTimeout => 4,
            ErrorKind::BodyTooLarge | ErrorKind::HeaderTooLarge => 8,
            ErrorKind::NoRoute | ErrorKind::NotFound | ErrorKind::MethodNotAllowed => 12,
            ErrorKind::ForwardDenied | ErrorKind::IpDenied | ErrorKind::PurgeDenied => 7,
            ErrorKind::RateLimited | ErrorKind::TooManyInFlight => 8,
            ErrorKind::Unauthorized => 16,
            ErrorKind::Forbidden => 7,
            ErrorKind::AuthUnavailable | ErrorKind::PolicyStoreUnavailable => 14,
            ErrorKind::IdempotencyKeyMissing | ErrorKind::IdempotencyMismatch => 3,
            ErrorKind::IdempotencyConflict => 10,
            ErrorKind::BadRequest | ErrorKind::ClientBody | ErrorKind::Internal => 13,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamProtocol
            | ErrorKind::NoEndpoint
            | ErrorKind::CircuitOpen
            | ErrorKind::UpstreamBusy
            | ErrorKind::Overloaded => 14,
        }
    }

    /// Who is at fault, by default, for this kind.
    pub fn side(self) -> Side {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::NoRoute
            | ErrorKind::NotFound
            | ErrorKind::ForwardDenied
            | ErrorKind::IpDenied
            | ErrorKind::PurgeDenied
            | ErrorKind::RateLimited
            | ErrorKind::TooManyInFlight
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::IdempotencyKeyMissing
            | ErrorKind::IdempotencyConflict
            | ErrorKind::IdempotencyMismatch
            | ErrorKind::MethodNotAllowed
            | ErrorKind::HeaderTooLarge
            | ErrorKind::BodyTooLarge
            | ErrorKind::ClientBody => Side::Client,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamProtocol
            | ErrorKind::NoEndpoint
            | ErrorKind::CircuitOpen
            | ErrorKind::UpstreamBusy => Side::Upstream,
            ErrorKind::Internal
            | ErrorKind::Overloaded
            | ErrorKind::AuthUnavailable
            | ErrorKind::PolicyStoreUnavailable => Side::Internal,
        }
    }
}

/// An error in handling one request: what, whose fault, whether a retry is safe, and the cause
/// (kept for logs, never sent to the client).
#[derive(Debug)]
pub struct ProxyError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Who is at fault.
    pub side: Side,
    /// Whether a retry is safe.
    pub retry: Retry,
    /// The underlying cause, for logs.
    pub source: Option<BoxError>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
    /// More response headers (`WWW-Authenticate`, rate-limit fields …).
    pub headers: Option<Box<http::HeaderMap>>,
}

impl ProxyError {
    /// An error of `kind` with its default side and no retry.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            side: kind.side(),
            retry: Retry::No,
            source: None,
            retry_after: None,
            headers: None,
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .append(name, value);
        self
    }

    /// Sets the `Retry-After` the response carries.
    pub fn retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sets whether a retry is safe.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The one error → response mapping: status, a short JSON body with the request id,
    /// `cache-control: no-store`, and `connection: close` when the client broke the protocol.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let status = self.status();
        let id = request_id.to_str().unwrap_or("");
        let body = format!(
            "{{\"status\":{},\"error\":\"{}\",\"message\":\"{}\",\"request_id\":\"{}\"}}\n",
            status.as_u16(),
            self.kind.code(),
            self.kind.public_message(),
            json_escape(id),
        );
        let mut resp = Response::new(ResponseBody::full(Bytes::from(body)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Some(extra) = &self.headers {
            for (name, value) in extra.iter() {
                h.append(name.clone(), value.clone());
            }
        }
        if matches!(
            self.kind,
            ErrorKind::BadRequest
                | ErrorKind::HeaderTooLarge
                | ErrorKind::BodyTooLarge
                | ErrorKind::ClientBody
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl ProxyError {
    /// `grpc-status` and `grpc-message` for this error: the fields of a trailers-only gRPC
    /// answer, and the trailers that end a stream the error cut short.
    pub fn grpc_status_fields(&self) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from(self.kind.grpc_status()));
        // grpc-message is percent-encoded; the public messages are plain ASCII words.
        let message = self.kind.public_message().replace(' ', "%20");
        if let Ok(v) = HeaderValue::from_str(&message) {
            h.insert("grpc-message", v);
        }
        h
    }

    /// The same error for a gRPC client: HTTP 200 with `grpc-status` and `grpc-message` as a
    /// trailers-only response, which is what gRPC clients read (an HTTP error status would
    /// reach them as an opaque `UNKNOWN`/`INTERNAL`).
    pub fn to_grpc_response(&self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::Empty);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.extend(self.grpc_status_fields());
        h.insert("x-weir-error", HeaderValue::from_static(self.kind.code()));
        if let Some(after) = self.retry_after {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(extra) = &self.headers {
            for (name, value) in extra.iter() {
                h.append(name.clone(), value.clone());
            }
        }
        let _ = request_id;
        resp
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.public_message())?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ErrorKind> for ProxyError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

/// Escapes a string for a JSON string literal (request ids are client-supplied).
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_status() {
        let cases = [
            (ErrorKind::BadRequest, 400),
            (ErrorKind::NoRoute, 404),
            (ErrorKind::HeaderTooLarge, 431),
            (ErrorKind::BodyTooLarge, 413),
            (ErrorKind::UpstreamConnect, 502),
            (ErrorKind::UpstreamTimeout, 504),
            (ErrorKind::NoEndpoint, 503),
            (ErrorKind::Overloaded, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let resp = ProxyError::new(kind).to_response(&HeaderValue::from_static("abc"));
            assert_eq!(resp.status().as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn escapes_request_ids() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
