//! `weir explain` and `GET /explain`: which route a request would take and why the routes
//! tried before it did not match, then what the route would do — without sending anything.

use std::fmt;

use http::{HeaderMap, Method, Uri};
use weir_route::{Action, RequestView};

use crate::runtime::Runtime;

/// One route tried.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    /// Route name.
    pub route: String,
    /// Whether it matched (the last step, if any matched).
    pub matched: bool,
    /// Why it did not.
    pub reason: Option<String>,
}

/// What Weir would do with a request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// Listener the request is explained for.
    pub listener: String,
    /// Host, normalized path and query as routing sees them.
    pub host: Option<String>,
    /// Normalized path.
    pub path: String,
    /// Routes in precedence order, up to the one that matched.
    pub steps: Vec<Step>,
    /// What the matched route does, in one line.
    pub action: String,
    /// The facts under it: each endpoint and its state, the provider, the breaker.
    pub details: Vec<String>,
    /// The policy chain, in order.
    pub policies: Vec<String>,
    /// The route's cache and the key this request is stored under, when the route caches.
    pub cache: Option<CacheKey>,
}

/// A cache and a request's primary key in it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheKey {
    /// The `[[caches]]` name.
    pub name: String,
    /// The URL the entry is stored under (after the key's query rules), then any headers and
    /// cookies the key adds (`+ name: value`). `Vary` adds variants under it.
    pub key: String,
}

/// Why a request could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The method or URL does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// No such listener.
    #[error("no listener `{0}`")]
    NoListener(String),
}

/// Explains `method url` with `headers` on `listener` (default: the first listener).
pub fn explain(
    rt: &Runtime,
    listener: Option<&str>,
    method: &str,
    url: &str,
    headers: &HeaderMap,
) -> Result<Explanation, ExplainError> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ExplainError::BadRequest(format!("`{method}` is not an HTTP method")))?;
    // Credentials in the query are redacted before anything is explained: they would show in
    // the cache key, the match steps and this error.
    let shown = match url.split_once('?') {
        Some((path, q)) => rt
            .redact
            .query(q)
            .map_or_else(|| url.to_owned(), |q| format!("{path}?{q}")),
        None => url.to_owned(),
    };
    let uri: Uri = shown
        .parse()
        .map_err(|_| ExplainError::BadRequest(format!("`{shown}` is not a URL or path")))?;
    let (name, router) = match listener {
        Some(l) => rt
            .routers
            .iter()
            .find(|(n, _)| &**n == l)
            .ok_or_else(|| ExplainError::NoListener(l.to_owned()))?,
        None => rt
            .routers
            .first()
            .ok_or_else(|| ExplainError::NoListener("(none)".to_owned()))?,
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .and_then(weir_route::normalize_host)
        .map(|h| h.into_owned());
    let path = weir_route::normalize_path(uri.path());
    let view = RequestView {
        method: &method,
        host: host.as_deref(),
        path: &path,
        query: uri.query(),
        headers,
    };
    let mut steps = Vec::new();
    let mut action = vec!["no route matches: 404 no_route".to_owned()];
    let mut policies = Vec::new();
    let mut cache = None;
    let scheme = uri.scheme_str().unwrap_or("http");
    for route in router.routes() {
        match route.matcher.first_failure(&view) {
            Some(f) => steps.push(Step {
                route: route.name.to_string(),
                matched: false,
                reason: Some(route.matcher.describe(f)),
            }),
            None => {
                steps.push(Step {
                    route: route.name.to_string(),
                    matched: true,
                    reason: None,
                });
                let split = rt.routes.get(route.index).and_then(|e| e.split.as_ref());
                action = match split {
                    Some(split) => describe_split(rt, split, &route.action, &method, &uri, headers),
                    None => describe_action(rt, &route.action),
                };
                policies = rt
                    .routes
                    .get(route.index)
                    .map(|entry| {
                        entry
                            .policies
                            .iter()
                            .map(|p| format!("{} ({})", p.name, p.describe()))
                            .collect()
                    })
                    .unwrap_or_default();
                cache = rt
                    .routes
                    .get(route.index)
                    .and_then(|entry| entry.cache.as_ref())
                    .map(|c| CacheKey {
                        name: c.name.to_string(),
                        key: c.describe_key(
                            scheme,
                            host.as_deref().unwrap_or(""),
                            uri.path(),
                            uri.query(),
                            headers,
                        ),
                    });
                break;
            }
        }
    }
    Ok(Explanation {
        listener: name.to_string(),
        host,
        path: path.into_owned(),
        steps,
        action: action.first().cloned().unwrap_or_default(),
        details: action
            .iter()
            .skip(1)
            .map(|l| l.trim_start().to_owned())
            .collect(),
        policies,
        cache,
    })
}

/// Every listener's routes in precedence order: name, conditions, action (`GET /routes`).
pub fn routes(rt: &Runtime) -> serde_json::Value {
    let listeners: Vec<serde_json::Value> = rt
        .routers
        .iter()
        .map(|(name, router)| {
            let routes: Vec<serde_json::Value> = router
                .routes()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": &*r.name,
                        "match": r.matcher.summary(),
                        "action": match rt.routes.get(r.index).and_then(|e| e.split.as_ref()) {
                            Some(split) => split.describe().first().cloned().unwrap_or_default(),
                            None => describe_action(rt, &r.action).first().cloned().unwrap_or_default(),
                        },
                    })
                })
                .collect();
            serde_json::json!({"listener": &**name, "routes": routes})
        })
        .collect();
    serde_json::json!({ "listeners": listeners })
}

/// A split route: the versions and their shares, stickiness, overrides and the canary plan,
/// the version this request would get when that is decided by what it carries, then each
/// version's upstream as a plain proxy route shows it.
fn describe_split(
    rt: &Runtime,
    split: &crate::deploy::split::Split,
    action: &Action,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Vec<String> {
    let mut lines = split.describe();
    let mut req = http::Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers.clone();
    let (parts, ()) = req.into_parts();
    let choice = split.choose(&parts, std::net::IpAddr::from([127, 0, 0, 1]));
    if let Some(t) = split.targets.get(choice.index) {
        use crate::deploy::split::ChosenBy;
        lines.push(match choice.by {
            ChosenBy::Override => format!("this request: `{}` (override)", t.name),
            ChosenBy::Sticky if choice.set_cookie.is_none() => {
                format!("this request: `{}` (sticky key)", t.name)
            }
            _ => "this request: drawn by the shares".to_owned(),
        });
    }
    let retry_non_idempotent = matches!(
        action,
        Action::Proxy {
            retry_non_idempotent: true,
            ..
        }
    );
    for t in &split.targets {
        let Some(upstream) = rt.upstreams.iter().position(|u| u.name == t.name) else {
            continue;
        };
        let each = Action::Proxy {
            upstream,
            retry_non_idempotent,
        };
        lines.extend(
            describe_action(rt, &each)
                .into_iter()
                .map(|l| format!("  {l}")),
        );
    }
    lines
}

fn describe_action(rt: &Runtime, action: &Action) -> Vec<String> {
    match action {
        Action::Proxy {
            upstream,
            retry_non_idempotent,
        } => {
            let Some(u) = rt.upstreams.get(*upstream) else {
                return vec!["proxy to an unknown upstream".to_owned()];
            };
            let stats = u.stats();
            let mut lines = vec![format!(
                "proxy to upstream `{}` (balance {}{})",
                u.name,
                u.balance,
                if *retry_non_idempotent {
                    ", non-idempotent requests retried too"
                } else {
                    ""
                }
            )];
            if let Some(d) = &stats.discovery {
                let when = d
                    .last_success
                    .map_or_else(|| "never yet".to_owned(), httpdate::fmt_http_date);
                let failures: u64 = d.failures.values().sum();
                lines.push(format!(
                    "  discovery: {} `{}`, {} endpoints, last answer {when}, {failures} failures",
                    d.provider, d.target, d.endpoints
                ));
            }
            for ep in &stats.endpoints {
                let state = if ep.drained {
                    "drained"
                } else if ep.in_service {
                    "in service"
                } else if ep.ejected {
                    "ejected"
                } else if ep.awaiting_check {
                    "waiting for its first passing check"
                } else {
                    "failing health checks"
                };
                lines.push(format!(
                    "  endpoint {} weight {} ({}): {state}",
                    ep.address,
                    ep.weight,
                    ep.source.as_str()
                ));
            }
            if let Some(b) = stats.breaker {
                lines.push(format!("  circuit breaker: {}", b.as_str()));
            }
            lines
        }
        Action::Respond(r) => vec![format!(
            "respond {} with a {}-byte body",
            r.status.as_u16(),
            r.body.len()
        )],
        Action::Redirect(r) => vec![format!("redirect {} to {}", r.status.as_u16(), r.location)],
        Action::Static(s) => vec![format!("serve files from {}", s.root.display())],
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "listener {}, host {}, path {}",
            self.listener,
            self.host.as_deref().unwrap_or("(none)"),
            self.path
        )?;
        writeln!(f, "routes, in precedence order:")?;
        for s in &self.steps {
            match &s.reason {
                None => writeln!(f, "  ✓ {}  ← matches", s.route)?,
                Some(r) => writeln!(f, "  ✗ {}: {r}", s.route)?,
            }
        }
        writeln!(f, "action:")?;
        writeln!(f, "  {}", self.action)?;
        for line in &self.details {
            writeln!(f, "    {line}")?;
        }
        if self.policies.is_empty() {
            writeln!(f, "policies: none")?;
        } else {
            writeln!(f, "policies: {}", self.policies.join(" → "))?;
        }
        match &self.cache {
            Some(c) => writeln!(f, "cache: `{}`, key {}", c.name, c.key),
            None => writeln!(f, "cache: none (the route does not cache)"),
        }
    }
}
