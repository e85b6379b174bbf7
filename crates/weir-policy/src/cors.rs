//! CORS per the Fetch standard: preflights (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) are answered at the gateway — 204 with the allowed
//! methods, headers and max-age, or 403 when the origin, method or a header is not allowed —
//! and actual requests from allowed origins get `Access-Control-Allow-Origin` (and
//! credentials, exposed headers) on their response. `Vary: Origin` is always added, since
//! the answer depends on it.

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use weir_core::{ErrorKind, ProxyError, ResponseBody};

use crate::{Early, Events, Hooks};

/// Events a CORS policy counts.
pub(crate) const EVENTS: &[&str] = &["preflight", "preflight_denied", "origin_denied"];

#[derive(Debug)]
enum OriginRule {
    Any,
    Exact(String),
    /// `scheme://*.suffix[:port]`: any one or more labels before the suffix.
    Wildcard {
        scheme: String,
        suffix: String,
    },
}

/// A compiled `cors` policy.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<OriginRule>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: Vec<String>,
    any_header: bool,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// Request headers a browser may send without asking (the Fetch standard's safelist).
const SAFELISTED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

impl CorsPolicy {
    pub(crate) fn compile(cfg: &weir_config::Cors) -> Self {
        let origins = cfg
            .allow_origins
            .iter()
            .map(|o| {
                if o == "*" {
                    return OriginRule::Any;
                }
                let lower = o.to_ascii_lowercase();
                match lower.split_once("://*.") {
                    Some((scheme, suffix)) => OriginRule::Wildcard {
                        scheme: scheme.to_owned(),
                        suffix: format!(".{suffix}"),
                    },
                    None => OriginRule::Exact(lower),
                }
            })
            .collect();
        let methods: Vec<Method> = cfg
            .allow_methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let methods_text: Vec<&str> = methods.iter().map(Method::as_str).collect();
        Self {
            origins,
            methods_value: HeaderValue::from_str(&methods_text.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("GET, HEAD, POST")),
            methods,
            headers: cfg
                .allow_headers
                .iter()
                .filter(|h| *h != "*")
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            any_header: cfg.allow_headers.iter().any(|h| h == "*"),
            expose: (!cfg.expose_headers.is_empty())
                .then(|| HeaderValue::from_str(&cfg.expose_headers.join(", ")).ok())
                .flatten(),
            credentials: cfg.allow_credentials,
            max_age: cfg.max_age.map(|d| HeaderValue::from(d.get().as_secs())),
        }
    }

    fn allowed(&self, origin: &str) -> bool {
        let o = origin.to_ascii_lowercase();
        self.origins.iter().any(|r| match r {
            OriginRule::Any => true,
            OriginRule::Exact(e) => *e == o,
            OriginRule::Wildcard { scheme, suffix } => o
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|host| {
                    host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                        && !host[..host.len() - suffix.len()].contains(['/', ':', '@'])
                }),
        })
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        let any = self.origins.iter().any(|r| matches!(r, OriginRule::Any));
        if any && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    pub(crate) fn check(
        &self,
        method: &Method,
        parts: &Parts,
        hooks: &mut Hooks,
        events: &Events,
    ) -> Result<(), Early> {
        // Whatever the request, the answer depends on its Origin (caches must know).
        hooks.vary_origin = true;
        let Some(origin) = parts.headers.get(http::header::ORIGIN) else {
            return Ok(());
        };
        let allowed = origin.to_str().is_ok_and(|o| self.allowed(o));
        let preflight = *method == Method::OPTIONS
            && parts
                .headers
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            events.add("preflight");
            return Err(self.preflight(parts, origin, allowed, events));
        }
        if !allowed {
            events.add("origin_denied");
            // No CORS headers: the browser withholds the response from the page.
            hooks
                .add
                .get_or_insert_with(HeaderMap::new)
                .insert(http::header::VARY, HeaderValue::from_static("origin"));
            return Ok(());
        }
        let h = hooks.add.get_or_insert_with(HeaderMap::new);
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        if self.credentials {
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(e) = &self.expose {
            h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        Ok(())
    }

    fn preflight(
        &self,
        parts: &Parts,
        origin: &HeaderValue,
        allowed: bool,
        events: &Events,
    ) -> Early {
        let requested = parts
            .headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        let method_ok = requested.as_ref().is_some_and(|m| {
            self.methods.contains(m) || matches!(*m, Method::GET | Method::HEAD | Method::POST)
        });
        let asked: Vec<String> = parts
            .headers
            .get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let headers_ok = asked.iter().all(|h| {
            SAFELISTED.contains(&h.as_str())
                || self.headers.contains(h)
                || (self.any_header && !self.credentials && h != "authorization")
        });
        if !(allowed && method_ok && headers_ok) {
            events.add("preflight_denied");
            let e = ProxyError::new(ErrorKind::Forbidden).with_header(
                http::header::VARY,
                HeaderValue::from_static(
                    "origin, access-control-request-method, access-control-request-headers",
                ),
            );
            return Early::Error(e);
        }
        let mut resp = Response::new(ResponseBody::Empty);
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h: &mut HeaderMap = resp.headers_mut();
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        if !asked.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&asked.join(", ")) {
                h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if self.credentials {
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(m) = &self.max_age {
            h.insert(http::header::ACCESS_CONTROL_MAX_AGE, m.clone());
        }
        h.insert(
            http::header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Early::Response(Box::new(resp))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "cors: {} origin rule(s), methods {}",
            self.origins.len(),
            self.methods_value.to_str().unwrap_or("")
        )
    }
}

impl crate::kind::Compiles for weir_config::Cors {
    type Kind = CorsPolicy;
}

impl crate::kind::PolicyKind for CorsPolicy {
    type Config = weir_config::Cors;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        _: &str,
        cfg: &weir_config::Cors,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Ok(Self::compile(cfg))
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(&r.ctx.method, r.parts, r.hooks, r.events)
    }

    fn summary(&self) -> String {
        self.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let cfg = weir_config::Cors {
            allow_origins: vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
            ],
            allow_methods: vec!["GET".into()],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: true,
            max_age: None,
        };
        let c = CorsPolicy::compile(&cfg);
        assert!(c.allowed("https://app.example.com"));
        assert!(c.allowed("HTTPS://APP.EXAMPLE.COM"));
        assert!(!c.allowed("http://app.example.com"));
        assert!(!c.allowed("https://app.example.com.evil.net"));
        assert!(c.allowed("https://a.b.example.org"));
        assert!(!c.allowed("https://example.org"));
        assert!(!c.allowed("https://evilexample.org"));
        assert!(!c.allowed("https://x@evil.net/.example.org"));
    }
}
