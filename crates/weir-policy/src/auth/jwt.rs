//! JWT verification: the token from a header, cookie or query parameter; its `alg` on the
//! allow-list (never `none`; an HMAC algorithm is never verified with a public key nor the
//! reverse); its key by `kid` from inline keys or a JWKS set; signature, `exp`/`nbf` with
//! leeway, `iss`, `aud`, required claims, then claim rules (403 when one fails). The verified
//! claims go on the request context, the consumer claim becomes the identity, and chosen
//! claims travel upstream as headers the client can never set itself.

use std::collections::HashSet;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use weir_config::{ClaimRule, TokenSource};
use weir_core::{ErrorKind, ProxyError, RequestCtx};

use super::jwks::{Jwks, Lookup};
use crate::{CompileError, Early, Events, Policy};

/// Events a JWT policy counts.
pub(crate) const EVENTS: &[&str] = &[
    "jwks_refresh_ok",
    "jwks_refresh_failed",
    "jwks_refresh_throttled",
    "invalid_token",
    "expired",
    "missing_token",
    "insufficient_claims",
];

/// Tokens longer than this are refused without parsing.
const MAX_TOKEN: usize = 16 * 1024;

/// The family an algorithm's key must be of.
pub(crate) fn family(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        _ => AlgorithmFamily::Rsa,
    }
}

/// A compiled `jwt` policy.
pub struct JwtPolicy {
    algorithms: Vec<Algorithm>,
    keys: Vec<(Option<String>, DecodingKey)>,
    jwks: Option<Jwks>,
    validation: Validation,
    required: Vec<String>,
    rules: Vec<ClaimRule>,
    token_from: Vec<TokenSource>,
    forward: Vec<(String, HeaderName)>,
    consumer_claim: String,
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys.len())
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "aud", "iss", "sub"];

impl JwtPolicy {
    pub(crate) fn compile(name: &str, cfg: &weir_config::Jwt) -> Result<Self, CompileError> {
        let err = |m: String| CompileError::new(name, m);
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| err(format!("unknown algorithm `{a}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = *algorithms
            .first()
            .ok_or_else(|| err("no algorithms".to_owned()))?;
        let mut keys = Vec::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            let key = match (&k.secret, &k.pem) {
                (Some(s), None) => DecodingKey::from_secret(s.expose().as_bytes()),
                (None, Some(pem)) => {
                    let pem = pem.expose().as_bytes();
                    DecodingKey::from_rsa_pem(pem)
                        .or_else(|_| DecodingKey::from_ec_pem(pem))
                        .or_else(|_| DecodingKey::from_ed_pem(pem))
                        .map_err(|e| {
                            err(format!(
                                "keys[{i}].pem: not an RSA, EC or Ed25519 public key: {e}"
                            ))
                        })?
                }
                _ => return Err(err(format!("keys[{i}]: set exactly one of secret and pem"))),
            };
            keys.push((k.kid.clone(), key));
        }
        let jwks = cfg
            .jwks_url
            .as_deref()
            .map(|u| {
                Jwks::new(
                    name,
                    u,
                    cfg.jwks_timeout.get(),
                    cfg.jwks_cache.get(),
                    cfg.jwks_min_refresh.get(),
                    cfg.jwks_tls.as_ref(),
                )
            })
            .transpose()
            .map_err(err)?;
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms.clone();
        validation.leeway = cfg.leeway.get().as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut spec: HashSet<String> = HashSet::from(["exp".to_owned()]);
        for c in &cfg.required_claims {
            if SPEC_CLAIMS.contains(&c.as_str()) {
                spec.insert(c.clone());
            }
        }
        if !cfg.issuers.is_empty() {
            validation.set_issuer(&cfg.issuers);
            spec.insert("iss".to_owned());
        }
        if cfg.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&cfg.audiences);
            spec.insert("aud".to_owned());
        }
        validation.required_spec_claims = spec;
        let forward = cfg
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim.clone(), h))
                    .map_err(|_| err(format!("`{header}` is not a header name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            algorithms,
            keys,
            jwks,
            validation,
            required: cfg.required_claims.clone(),
            rules: cfg.rules.clone(),
            token_from: cfg.token_from.clone(),
            forward,
            consumer_claim: cfg.consumer_claim.clone(),
        })
    }

    /// Fetches the JWKS set in the background at start, so the first request finds it.
    pub(crate) fn start(&self, policy: Arc<Policy>) {
        if let Some(jwks) = &self.jwks {
            jwks.prefetch(&policy.events);
        }
    }

    pub(crate) async fn check(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut Parts,
        events: &Events,
    ) -> Result<(), Early> {
        // Claim headers only ever come from Weir.
        for (_, header) in &self.forward {
            parts.headers.remove(header);
        }
        let Some(token) = super::credential(parts, &self.token_from, true) else {
            events.add("missing_token");
            return Err(super::unauthorized("Bearer realm=\"weir\"".to_owned()).into());
        };
        let invalid = |why: &str| {
            Early::Error(super::unauthorized(format!(
                "Bearer realm=\"weir\", error=\"invalid_token\", error_description=\"{why}\""
            )))
        };
        if token.len() > MAX_TOKEN {
            events.add("invalid_token");
            return Err(invalid("token too large"));
        }
        // An unknown or `none` alg fails here: the header does not parse.
        let header = jsonwebtoken::decode_header(&token).map_err(|_| {
            events.add("invalid_token");
            invalid("malformed token")
        })?;
        if !self.algorithms.contains(&header.alg) {
            events.add("invalid_token");
            return Err(invalid("algorithm not allowed"));
        }
        let key = self
            .key_for(header.kid.as_deref(), header.alg, events)
            .await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => {
                        events.add("expired");
                        invalid("token expired")
                    }
                    K::ImmatureSignature => {
                        events.add("invalid_token");
                        invalid("token not yet valid")
                    }
                    K::InvalidAudience => {
                        events.add("invalid_token");
                        invalid("wrong audience")
                    }
                    K::InvalidIssuer => {
                        events.add("invalid_token");
                        invalid("wrong issuer")
                    }
                    K::MissingRequiredClaim(c) => {
                        events.add("invalid_token");
                        invalid(&format!("missing claim {c}"))
                    }
                    _ => {
                        events.add("invalid_token");
                        invalid("invalid signature")
                    }
                }
            })?;
        let claims = data.claims;
        if let Some(missing) = self
            .required
            .iter()
            .find(|c| !claims.contains_key(c.as_str()))
        {
            events.add("invalid_token");
            return Err(invalid(&format!("missing claim {missing}")));
        }
        if let Some(rule) = self.rules.iter().find(|r| !rule_holds(r, &claims)) {
            events.add("insufficient_claims");
            let scope = rule
                .contains
                .as_deref()
                .or(rule.equals.as_deref())
                .unwrap_or("");
            let scope: String = scope.chars().filter(|c| *c != '"' && *c != '\\').collect();
            return Err(super::forbidden(Some(format!(
                "Bearer realm=\"weir\", error=\"insufficient_scope\", scope=\"{scope}\""
            )))
            .into());
        }
        ctx.claims = Some(Arc::new(claims));
        if let Some(consumer) = ctx.claim_text(&self.consumer_claim) {
            ctx.consumer = Some(Arc::from(consumer.as_str()));
        }
        for (claim, header) in &self.forward {
            if let Some(v) = ctx
                .claim_text(claim)
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                parts.headers.insert(header.clone(), v);
            }
        }
        Ok(())
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        events: &Events,
    ) -> Result<DecodingKey, Early> {
        let fam = family(alg);
        let inline = self.keys.iter().filter(|(_, k)| k.family() == fam);
        let found = match kid {
            Some(kid) => inline.clone().find(|(k, _)| k.as_deref() == Some(kid)),
            None => {
                let mut c = inline.clone();
                let first = c.next();
                first.filter(|_| c.next().is_none())
            }
        };
        if let Some((_, key)) = found {
            return Ok(key.clone());
        }
        // A kid-less inline key also serves tokens whose kid we do not know when there is
        // no JWKS set to ask.
        if self.jwks.is_none() {
            let mut c = inline.filter(|(k, _)| k.is_none());
            if let (Some((_, key)), None) = (c.next(), c.next()) {
                return Ok(key.clone());
            }
        }
        let invalid = || {
            Early::Error(super::unauthorized(
                "Bearer realm=\"weir\", error=\"invalid_token\", error_description=\"unknown key\""
                    .to_owned(),
            ))
        };
        let Some(jwks) = &self.jwks else {
            events.add("invalid_token");
            return Err(invalid());
        };
        match jwks.find(kid, alg, events).await {
            Lookup::Found(k) => Ok(k.key.clone()),
            Lookup::Unknown => {
                events.add("invalid_token");
                Err(invalid())
            }
            Lookup::Unavailable => Err(ProxyError::new(ErrorKind::AuthUnavailable)
                .retry_after(std::time::Duration::from_secs(1))
                .into()),
        }
    }

    pub(crate) fn describe(&self) -> String {
        let algs: Vec<String> = self.algorithms.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "jwt: {} with {} inline key(s){}",
            algs.join(" "),
            self.keys.len(),
            if self.jwks.is_some() {
                " and a JWKS set"
            } else {
                ""
            }
        )
    }
}

fn rule_holds(rule: &ClaimRule, claims: &Map<String, Value>) -> bool {
    let Some(value) = claims.get(&rule.claim) else {
        return false;
    };
    if let Some(want) = &rule.equals {
        return match value {
            Value::String(s) => s == want,
            other => serde_json::from_str::<Value>(want).ok().as_ref() == Some(other),
        };
    }
    if let Some(want) = &rule.contains {
        return match value {
            Value::String(s) => s.split(' ').any(|p| p == want),
            Value::Array(items) => items.iter().any(|i| i.as_str() == Some(want.as_str())),
            _ => false,
        };
    }
    false
}

impl crate::kind::Compiles for weir_config::Jwt {
    type Kind = JwtPolicy;
}

impl crate::kind::PolicyKind for JwtPolicy {
    type Config = weir_config::Jwt;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        name: &str,
        cfg: &weir_config::Jwt,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg)
    }

    fn start(&self, policy: std::sync::Arc<crate::Policy>) {
        JwtPolicy::start(self, policy);
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, r.parts, r.events).await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}
