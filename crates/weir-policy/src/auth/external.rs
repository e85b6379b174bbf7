//! External authorization (forward auth, like nginx `auth_request` or Envoy `ext_authz` over
//! HTTP): Weir asks the auth service at its URL with the original method, URI, host and
//! client in `X-Forwarded-*` headers plus chosen request headers. A 2xx lets the request
//! through and copies chosen headers of the answer onto the upstream request; any other
//! answer is returned to the client as it is. When the service fails or is too slow,
//! `on_error` decides.

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use weir_config::FailureMode;
use weir_core::{ErrorKind, ProxyError, RequestCtx, ResponseBody};

use crate::fetch::Fetcher;
use crate::{CompileError, Early, Events};

/// Events an ext-auth policy counts.
pub(crate) const EVENTS: &[&str] = &["allowed", "denied", "error"];

/// A compiled `ext_auth` policy.
#[derive(Debug)]
pub struct ExtAuthPolicy {
    fetcher: Fetcher,
    url: String,
    request_headers: Vec<HeaderName>,
    upstream_headers: Vec<HeaderName>,
    on_error: FailureMode,
}

fn names(list: &[String]) -> Vec<HeaderName> {
    list.iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect()
}

impl ExtAuthPolicy {
    pub(crate) fn compile(name: &str, cfg: &weir_config::ExtAuth) -> Result<Self, CompileError> {
        Ok(Self {
            fetcher: Fetcher::new(
                &format!("ext_auth:{name}"),
                &cfg.url,
                cfg.timeout.get(),
                cfg.tls.as_ref(),
            )
            .map_err(|m| CompileError::new(name, m))?,
            url: cfg.url.clone(),
            request_headers: names(&cfg.request_headers),
            upstream_headers: names(&cfg.upstream_headers),
            on_error: cfg.on_error,
        })
    }

    pub(crate) async fn check(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut Parts,
        events: &Events,
    ) -> Result<(), Early> {
        // Headers the auth service vouches for only ever come from it.
        for h in &self.upstream_headers {
            parts.headers.remove(h);
        }
        let mut headers = HeaderMap::new();
        for h in &self.request_headers {
            for v in parts.headers.get_all(h) {
                headers.append(h.clone(), v.clone());
            }
        }
        let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set(&mut headers, "x-forwarded-method", parts.method.as_str());
        set(
            &mut headers,
            "x-forwarded-uri",
            parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        );
        set(
            &mut headers,
            "x-forwarded-host",
            ctx.host.as_deref().unwrap_or(""),
        );
        set(&mut headers, "x-forwarded-for", &ctx.client_ip.to_string());
        set(
            &mut headers,
            "x-forwarded-proto",
            if ctx.tls { "https" } else { "http" },
        );
        headers.insert(
            HeaderName::from_static("x-request-id"),
            ctx.request_id.clone(),
        );
        let target = self.fetcher.target(None);
        match self.fetcher.send(Method::GET, &target, headers).await {
            Ok(resp) if resp.status.is_success() => {
                events.add("allowed");
                for h in &self.upstream_headers {
                    for v in resp.headers.get_all(h) {
                        parts.headers.append(h.clone(), v.clone());
                    }
                }
                Ok(())
            }
            Ok(resp) => {
                events.add("denied");
                let mut out = Response::new(ResponseBody::full(resp.body));
                *out.status_mut() = resp.status;
                for (name, value) in &resp.headers {
                    let hop = matches!(
                        name.as_str(),
                        "connection"
                            | "keep-alive"
                            | "transfer-encoding"
                            | "te"
                            | "trailer"
                            | "upgrade"
                            | "content-length"
                    );
                    if !hop {
                        out.headers_mut().append(name.clone(), value.clone());
                    }
                }
                Err(Early::Response(Box::new(out)))
            }
            Err(e) => {
                events.add("error");
                tracing::warn!(error = %e, url = %self.url, "auth service failed; on_error decides");
                match self.on_error {
                    FailureMode::Allow => Ok(()),
                    FailureMode::Deny => Err(ProxyError::new(ErrorKind::AuthUnavailable)
                        .with_source(e)
                        .into()),
                }
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("ext_auth: ask {}", self.url)
    }
}

impl crate::kind::Compiles for weir_config::ExtAuth {
    type Kind = ExtAuthPolicy;
}

impl crate::kind::PolicyKind for ExtAuthPolicy {
    type Config = weir_config::ExtAuth;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        name: &str,
        cfg: &weir_config::ExtAuth,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg)
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, r.parts, r.events).await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}
