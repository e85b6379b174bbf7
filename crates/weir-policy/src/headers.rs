//! Header edits on the request (before it goes upstream) and the response: `remove`, then
//! `set`, then `add`, with values from templates (`$client_ip`, `$request_id`, `$route`,
//! `$consumer`, `$host`, `$method`, `$path`, `${claim.NAME}`) parsed once at load.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_config::template::{parse_template, Part, Var};
use weir_core::RequestCtx;

/// One set of edits.
#[derive(Debug, Default)]
pub struct Edit {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, Vec<Part>)>,
    add: Vec<(HeaderName, Vec<Part>)>,
}

impl Edit {
    fn compile(cfg: &weir_config::HeaderEdit) -> Self {
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        parse_template(v).ok()?,
                    ))
                })
                .collect()
        };
        Self {
            remove: cfg
                .remove
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            set: pairs(&cfg.set),
            add: pairs(&cfg.add),
        }
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the edits to `headers`.
    pub fn apply(&self, ctx: &RequestCtx, headers: &mut HeaderMap) {
        for h in &self.remove {
            headers.remove(h);
        }
        for (h, t) in &self.set {
            if let Some(v) = render(t, ctx) {
                headers.insert(h.clone(), v);
            }
        }
        for (h, t) in &self.add {
            if let Some(v) = render(t, ctx) {
                headers.append(h.clone(), v);
            }
        }
    }
}

fn render(parts: &[Part], ctx: &RequestCtx) -> Option<HeaderValue> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Var(v) => match v {
                Var::ClientIp => out.push_str(&ctx.client_ip.to_string()),
                Var::RequestId => out.push_str(ctx.request_id.to_str().unwrap_or("")),
                Var::Route => out.push_str(ctx.route.as_deref().unwrap_or("")),
                Var::Consumer => out.push_str(ctx.consumer.as_deref().unwrap_or("")),
                Var::Host => out.push_str(ctx.host.as_deref().unwrap_or("")),
                Var::Method => out.push_str(ctx.method.as_str()),
                Var::Path => out.push_str(ctx.uri.path()),
                Var::Claim(c) => out.push_str(&ctx.claim_text(c).unwrap_or_default()),
            },
        }
    }
    // A value that cannot be a header (a control character from a claim) is left out.
    HeaderValue::from_str(&out).ok()
}

/// A compiled `headers` policy.
#[derive(Debug)]
pub struct HeaderPolicy {
    request: Edit,
    response: Option<Arc<Edit>>,
}

impl HeaderPolicy {
    pub(crate) fn compile(cfg: &weir_config::HeaderOps) -> Self {
        let response = Edit::compile(&cfg.response);
        Self {
            request: Edit::compile(&cfg.request),
            response: (!response.is_empty()).then(|| Arc::new(response)),
        }
    }

    pub(crate) fn apply_request(&self, ctx: &RequestCtx, headers: &mut HeaderMap) {
        self.request.apply(ctx, headers);
    }

    pub(crate) fn response_edit(&self) -> Option<Arc<Edit>> {
        self.response.clone()
    }
}

/// Adds `token` to the response's `Vary` unless it is already there.
pub fn vary(headers: &mut HeaderMap, token: &str) {
    let present = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token) || t.trim() == "*");
    if !present {
        if let Ok(v) = HeaderValue::from_str(token) {
            headers.append(http::header::VARY, v);
        }
    }
}

impl crate::kind::Compiles for weir_config::HeaderOps {
    type Kind = HeaderPolicy;
}

impl crate::kind::PolicyKind for HeaderPolicy {
    type Config = weir_config::HeaderOps;
    fn build(
        _: &str,
        cfg: &weir_config::HeaderOps,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Ok(Self::compile(cfg))
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.apply_request(r.ctx, &mut r.parts.headers);
        if let Some(edit) = self.response_edit() {
            r.hooks.edits.push(edit);
        }
        Ok(())
    }

    fn summary(&self) -> String {
        "headers: request and response edits".to_owned()
    }
}
