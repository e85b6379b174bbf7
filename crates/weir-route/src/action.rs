//! Route actions compiled into ready-to-use HTTP values.

use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::RouteError;

/// What a route does with a matched request.
#[derive(Debug)]
pub enum Action {
    /// Forward to the upstream at this index of the runtime's upstream list.
    Proxy {
        /// Index into the runtime's upstreams.
        upstream: usize,
        /// Retries of non-idempotent requests are allowed.
        retry_non_idempotent: bool,
    },
    /// Answer with a fixed response.
    Respond(RespondSpec),
    /// Answer with a redirect.
    Redirect(RedirectSpec),
    /// Serve files.
    Static(StaticSpec),
}

/// A fixed response.
#[derive(Debug)]
pub struct RespondSpec {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A redirect; `location` may hold `{host}`, `{path}` and `{request_uri}`.
#[derive(Debug)]
pub struct RedirectSpec {
    /// Status.
    pub status: StatusCode,
    /// Location template.
    pub location: String,
}

/// Static files.
#[derive(Debug)]
pub struct StaticSpec {
    /// Canonical root directory.
    pub root: PathBuf,
    /// Index file name.
    pub index: String,
    /// Prefix removed from the path before lookup.
    pub strip_prefix: Option<String>,
    /// File served for paths matching no file (single-page apps).
    pub fallback: Option<String>,
    /// Serve precompressed siblings (`.br`, `.zst`, `.gz`).
    pub precompressed: bool,
    /// How symbolic links are treated.
    pub symlinks: weir_config::Symlinks,
}

impl Action {
    pub(crate) fn compile(
        route: &weir_config::Route,
        index: usize,
        upstream_index: &impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, RouteError> {
        let invalid = |message: String| RouteError::Invalid {
            route: index,
            message,
        };
        if let Some(p) = &route.proxy {
            // A split's first version stands for the route where one name is wanted (explain);
            // the split itself decides per request.
            let name = p.upstreams().next().unwrap_or_default();
            let upstream = upstream_index(name).ok_or_else(|| RouteError::UnknownUpstream {
                route: index,
                upstream: name.to_owned(),
            })?;
            return Ok(Action::Proxy {
                upstream,
                retry_non_idempotent: p.retry_non_idempotent,
            });
        }
        if let Some(r) = &route.respond {
            let status = StatusCode::from_u16(r.status).map_err(|e| invalid(e.to_string()))?;
            let mut headers = HeaderMap::new();
            for (k, v) in &r.headers {
                let name =
                    HeaderName::from_bytes(k.as_bytes()).map_err(|e| invalid(e.to_string()))?;
                let value = HeaderValue::from_str(v).map_err(|e| invalid(e.to_string()))?;
                headers.append(name, value);
            }
            return Ok(Action::Respond(RespondSpec {
                status,
                headers,
                body: Bytes::from(r.body.clone()),
            }));
        }
        if let Some(r) = &route.redirect {
            let status = StatusCode::from_u16(r.status).map_err(|e| invalid(e.to_string()))?;
            return Ok(Action::Redirect(RedirectSpec {
                status,
                location: r.location.clone(),
            }));
        }
        if let Some(s) = &route.static_files {
            let root = s
                .root
                .canonicalize()
                .map_err(|e| invalid(format!("static root `{}`: {e}", s.root.display())))?;
            return Ok(Action::Static(StaticSpec {
                root,
                index: s.index.clone(),
                strip_prefix: s.strip_prefix.clone(),
                fallback: s.fallback.clone(),
                precompressed: s.precompressed,
                symlinks: s.symlinks,
            }));
        }
        Err(invalid("route has no action".to_owned()))
    }
}
