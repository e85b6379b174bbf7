//! Semantic checks of `[[policies]]` and `[[consumers]]`: what the schema alone cannot
//! express.

use std::collections::HashSet;

use crate::diagnostic::{Diagnostic, KeyPath};
use crate::schema::{
    ApiKey, BasicAuth, ConcurrencyLimit, Config, Cors, ExtAuth, HeaderEdit, HeaderOps, Idempotency,
    IpRules, Jwt, OnStoreError, Policy, RateKeys, RateLimit, StoreKind, POLICY_KINDS,
};

/// JWT algorithms Weir verifies.
pub const JWT_ALGORITHMS: [&str; 13] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA", "ES512",
];

pub(crate) fn check_policies<'a>(config: &'a Config, out: &mut Vec<Diagnostic>) -> Vec<&'a str> {
    let names = super::checks::unique(
        "policies",
        config.policies.iter().map(|p| p.name.as_str()),
        out,
    );
    for (i, p) in config.policies.iter().enumerate() {
        let at = KeyPath::root("policies").index(i);
        let kinds = p.kinds();
        if kinds.len() != 1 {
            out.push(
                Diagnostic::at(
                    at.key("name"),
                    format!(
                        "policy `{}` must set exactly one kind, found {}",
                        p.name,
                        if kinds.is_empty() {
                            "none".to_owned()
                        } else {
                            kinds.join(", ")
                        }
                    ),
                )
                .help(format!("one of: {}", POLICY_KINDS.join(", "))),
            );
        }
        check_policy(config, p, &at, out);
    }
    check_consumers(config, out);
    names
}

/// A policy kind's semantic checks; `at` is the kind's own key path
/// (`policies[i].rate_limit`). Every kind of [`crate::policy_kinds`] implements it.
pub(crate) trait CheckKind {
    fn check(&self, config: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>);
}

macro_rules! check_each_kind {
    ($($key:ident: $ty:ident => $doc:literal,)*) => {
        /// Runs the checks of every kind `p` sets.
        fn check_policy(config: &Config, p: &Policy, at: &KeyPath, out: &mut Vec<Diagnostic>) {
            $(
                if let Some(kind) = &p.$key {
                    CheckKind::check(kind, config, &at.key(stringify!($key)), out);
                }
            )*
        }
    };
}

crate::policy_kinds!(check_each_kind);

impl CheckKind for IpRules {
    fn check(&self, _: &Config, _: &KeyPath, _: &mut Vec<Diagnostic>) {}
}

impl CheckKind for RateLimit {
    fn check(&self, config: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let rl = self;
        if rl.limit == 0 {
            out.push(Diagnostic::at(at.key("limit"), "must be at least 1"));
        }
        if rl.period.get().is_zero() {
            out.push(Diagnostic::at(at.key("period"), "must be longer than 0"));
        }
        if rl.burst == Some(0) {
            out.push(Diagnostic::at(at.key("burst"), "must be at least 1"));
        }
        if rl.max_keys == 0 {
            out.push(Diagnostic::at(at.key("max_keys"), "must be at least 1"));
        }
        check_keys(&rl.key, rl.ipv6_prefix, at, out);
        check_store(config, rl.store, at, out);
    }
}

impl CheckKind for ConcurrencyLimit {
    fn check(&self, config: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let c = self;
        if c.limit == 0 {
            out.push(Diagnostic::at(at.key("limit"), "must be at least 1"));
        }
        check_keys(&c.key, c.ipv6_prefix, at, out);
        check_store(config, c.store, at, out);
        if c.lease.get() < std::time::Duration::from_secs(1) {
            out.push(Diagnostic::at(at.key("lease"), "must be at least 1s"));
        }
    }
}

impl CheckKind for Jwt {
    fn check(&self, _: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let j = self;
        check_jwt(j, at, out);
    }
}

impl CheckKind for ApiKey {
    fn check(&self, config: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let k = self;
        if k.key_from.is_empty() {
            out.push(Diagnostic::at(
                at.key("key_from"),
                "must name at least one place",
            ));
        }
        check_header_opt(
            k.consumer_header.as_deref(),
            &at.key("consumer_header"),
            out,
        );
        let any = config
            .consumers
            .iter()
            .any(|c| !c.api_keys.is_empty() || c.api_keys_file.is_some());
        if !any {
            out.push(
                Diagnostic::at(at.clone(), "no consumer has an API key")
                    .help("add [[consumers]] with api_keys = [\"sha256:…\"]"),
            );
        }
    }
}

impl CheckKind for BasicAuth {
    fn check(&self, _: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let b = self;
        if b.users.is_empty() {
            out.push(Diagnostic::at(
                at.key("users"),
                "must list at least one user",
            ));
        }
        for (user, hash) in &b.users {
            let h = hash.expose();
            let known = h.starts_with("$argon2")
                || ["$2a$", "$2b$", "$2x$", "$2y$"]
                    .iter()
                    .any(|p| h.starts_with(p));
            if !known {
                out.push(
                Diagnostic::at(at.key("users").key(user), "is not an argon2 or bcrypt hash")
                    .help("store a hash, never the password: e.g. `htpasswd -nbB user pass` (bcrypt) or `argon2` ($argon2id$…)"),
            );
            }
            if user.contains(':') || user.is_empty() {
                out.push(Diagnostic::at(
                    at.key("users").key(user),
                    "a user name must be non-empty and without `:`",
                ));
            }
        }
        check_header_opt(
            b.consumer_header.as_deref(),
            &at.key("consumer_header"),
            out,
        );
        if b.realm.contains('"') || b.realm.contains('\\') {
            out.push(Diagnostic::at(
                at.key("realm"),
                "must not contain `\"` or `\\`",
            ));
        }
    }
}

impl CheckKind for ExtAuth {
    fn check(&self, _: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let e = self;
        check_url(&e.url, &at.key("url"), out);
        check_fetch_tls(&e.url, e.tls.as_ref(), &at.key("tls"), out);
        check_headers(&e.request_headers, &at.key("request_headers"), out);
        check_headers(&e.upstream_headers, &at.key("upstream_headers"), out);
        if e.timeout.get().is_zero() {
            out.push(Diagnostic::at(at.key("timeout"), "must be longer than 0"));
        }
    }
}

impl CheckKind for Idempotency {
    fn check(&self, config: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let i = self;
        check_idempotency(config, i, at, out);
    }
}

impl CheckKind for Cors {
    fn check(&self, _: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let c = self;
        check_cors(c, at, out);
    }
}

impl CheckKind for HeaderOps {
    fn check(&self, _: &Config, at: &KeyPath, out: &mut Vec<Diagnostic>) {
        let h = self;
        check_edit(&h.request, &at.key("request"), out);
        check_edit(&h.response, &at.key("response"), out);
    }
}

fn check_keys(keys: &RateKeys, ipv6_prefix: u8, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if ipv6_prefix == 0 || ipv6_prefix > 128 {
        out.push(Diagnostic::at(
            at.key("ipv6_prefix"),
            format!("must be between 1 and 128, found {ipv6_prefix}"),
        ));
    }
    let mut seen = HashSet::new();
    for k in &keys.0 {
        if !seen.insert(k.to_string()) {
            out.push(Diagnostic::at(
                at.key("key"),
                format!("`{k}` appears twice"),
            ));
        }
    }
}

fn check_store(config: &Config, store: StoreKind, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if store == StoreKind::Redis && config.redis.is_none() {
        out.push(
            Diagnostic::at(at.key("store"), "`redis` needs a [redis] section")
                .help("add:\n    [redis]\n    url = \"redis://127.0.0.1:6379\""),
        );
    }
}

fn check_jwt(j: &Jwt, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if j.algorithms.is_empty() {
        out.push(Diagnostic::at(
            at.key("algorithms"),
            "must name at least one algorithm",
        ));
    }
    let mut hmac = false;
    let mut public = false;
    for (i, a) in j.algorithms.iter().enumerate() {
        if a.eq_ignore_ascii_case("none") {
            out.push(
                Diagnostic::at(at.key("algorithms").index(i), "`none` is never accepted")
                    .help("unsigned tokens prove nothing"),
            );
        } else if !JWT_ALGORITHMS[..12].contains(&a.as_str()) {
            out.push(
                Diagnostic::at(
                    at.key("algorithms").index(i),
                    format!("unknown algorithm `{a}`"),
                )
                .suggest(a, JWT_ALGORITHMS[..12].iter().copied()),
            );
        } else if a.starts_with("HS") {
            hmac = true;
        } else {
            public = true;
        }
    }
    if hmac && public {
        out.push(
            Diagnostic::at(
                at.key("algorithms"),
                "HMAC (HS*) and public-key algorithms cannot share a policy",
            )
            .help("a public key used as an HMAC secret lets anyone sign tokens: use two policies"),
        );
    }
    if j.keys.is_empty() && j.jwks_url.is_none() {
        out.push(
            Diagnostic::at(at.key("keys"), "a jwt policy needs `keys` or `jwks_url`")
                .help("keys = [{ secret = \"${JWT_SECRET}\" }] or jwks_url = \"https://idp.example.com/.well-known/jwks.json\""),
        );
    }
    for (i, k) in j.keys.iter().enumerate() {
        let at = at.key("keys").index(i);
        match (&k.secret, &k.pem) {
            (Some(_), None) if public => out.push(Diagnostic::at(
                at.key("secret"),
                "an HMAC secret with public-key algorithms",
            )),
            (None, Some(_)) if hmac => out.push(Diagnostic::at(
                at.key("pem"),
                "a public key with HMAC algorithms",
            )),
            (Some(s), None) if s.expose().len() < 32 => out.push(
                Diagnostic::at(at.key("secret"), "an HMAC secret must be at least 32 bytes")
                    .help("RFC 7518 §3.2: the key must be at least as long as the hash"),
            ),
            (Some(_), None) | (None, Some(_)) => {}
            _ => out.push(Diagnostic::at(at, "set exactly one of `secret` and `pem`")),
        }
    }
    if let Some(u) = &j.jwks_url {
        check_url(u, &at.key("jwks_url"), out);
    }
    match (&j.jwks_url, &j.jwks_tls) {
        (Some(u), tls) => check_fetch_tls(u, tls.as_ref(), &at.key("jwks_tls"), out),
        (None, Some(_)) => out.push(Diagnostic::at(
            at.key("jwks_tls"),
            "`jwks_tls` needs a `jwks_url`",
        )),
        (None, None) => {}
    }
    for (i, r) in j.rules.iter().enumerate() {
        if r.equals.is_some() == r.contains.is_some() {
            out.push(Diagnostic::at(
                at.key("rules").index(i),
                "set exactly one of `equals` and `contains`",
            ));
        }
    }
    if j.token_from.is_empty() {
        out.push(Diagnostic::at(
            at.key("token_from"),
            "must name at least one place",
        ));
    }
    for (claim, header) in &j.forward_claims {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.key("forward_claims").key(claim),
                format!("`{header}` is not a valid header name"),
            ));
        }
    }
}

fn check_idempotency(config: &Config, i: &Idempotency, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    for (n, m) in i.methods.iter().enumerate() {
        if http::Method::from_bytes(m.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.key("methods").index(n),
                format!("`{m}` is not a method"),
            ));
        }
    }
    check_header_opt(Some(&i.header), &at.key("header"), out);
    check_headers(&i.fingerprint_headers, &at.key("fingerprint_headers"), out);
    for (n, s) in i.statuses.iter().enumerate() {
        if parse_status_set(s).is_none() {
            out.push(
                Diagnostic::at(
                    at.key("statuses").index(n),
                    format!("`{s}` is not a status"),
                )
                .help("a class like \"2xx\" or a code like \"409\""),
            );
        }
    }
    if i.ttl.get().is_zero() || i.lock_ttl.get().is_zero() {
        out.push(Diagnostic::at(
            at.key("ttl"),
            "`ttl` and `lock_ttl` must be longer than 0",
        ));
    }
    check_store(config, i.store, at, out);
    if i.on_store_error == OnStoreError::Local {
        out.push(
            Diagnostic::at(at.key("on_store_error"), "`local` is for rate limits")
                .help("use `allow` (forward without idempotency) or `deny` (503)"),
        );
    }
}

/// `"2xx"` → 200..=299, `"409"` → 409..=409.
pub fn parse_status_set(s: &str) -> Option<(u16, u16)> {
    let b = s.as_bytes();
    if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") && (b'1'..=b'5').contains(&b[0]) {
        let c = u16::from(b[0] - b'0') * 100;
        return Some((c, c + 99));
    }
    let n: u16 = s.parse().ok()?;
    (100..=599).contains(&n).then_some((n, n))
}

fn check_cors(c: &Cors, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if c.allow_origins.is_empty() {
        out.push(Diagnostic::at(
            at.key("allow_origins"),
            "must list at least one origin",
        ));
    }
    for (i, o) in c.allow_origins.iter().enumerate() {
        if o == "*" {
            if c.allow_credentials {
                out.push(
                    Diagnostic::at(
                        at.key("allow_origins").index(i),
                        "`*` cannot be used with allow_credentials",
                    )
                    .help("the Fetch standard forbids it: list the origins"),
                );
            }
            continue;
        }
        let ok = o.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && !rest.is_empty()
                && !rest.contains('/')
                && rest.matches('*').count() <= 1
                && (!rest.contains('*') || rest.starts_with("*."))
        });
        if !ok {
            out.push(
                Diagnostic::at(at.key("allow_origins").index(i), format!("`{o}` is not an origin"))
                    .help("scheme://host[:port], e.g. \"https://app.example.com\" or \"https://*.example.com\""),
            );
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if http::Method::from_bytes(m.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.key("allow_methods").index(i),
                format!("`{m}` is not a method"),
            ));
        }
    }
    let headers: Vec<String> = c
        .allow_headers
        .iter()
        .filter(|h| *h != "*")
        .cloned()
        .collect();
    check_headers(&headers, &at.key("allow_headers"), out);
    check_headers(&c.expose_headers, &at.key("expose_headers"), out);
}

fn check_edit(e: &HeaderEdit, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    check_headers(&e.remove, &at.key("remove"), out);
    for (key, map) in [("set", &e.set), ("add", &e.add)] {
        for (name, value) in map {
            let here = at.key(key).key(name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(Diagnostic::at(
                    here.clone(),
                    format!("`{name}` is not a valid header name"),
                ));
            }
            if let Err((pos, msg)) = crate::template::parse_template(value) {
                out.push(Diagnostic::at(
                    here,
                    format!("at character {}: {msg}", pos + 1),
                ));
            }
        }
    }
}

fn check_consumers(config: &Config, out: &mut Vec<Diagnostic>) {
    super::checks::unique(
        "consumers",
        config.consumers.iter().map(|c| c.name.as_str()),
        out,
    );
    for (i, c) in config.consumers.iter().enumerate() {
        for (j, k) in c.api_keys.iter().enumerate() {
            if let Err(msg) = check_api_key(k.expose()) {
                out.push(Diagnostic::at(
                    KeyPath::root("consumers").index(i).key("api_keys").index(j),
                    msg,
                ));
            }
        }
    }
}

/// A key as written: `sha256:` and 64 hex digits, or the key itself (at least 16 bytes).
pub fn check_api_key(k: &str) -> Result<(), String> {
    match k.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        Some(_) => Err("a `sha256:` key needs 64 hex digits".to_owned()),
        None if k.len() >= 16 => Ok(()),
        None => Err("an API key must be at least 16 characters (or `sha256:HEX`)".to_owned()),
    }
}

fn check_url(u: &str, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>()
            .is_ok_and(|x| x.authority().is_some());
    if !ok {
        out.push(
            Diagnostic::at(
                at.clone(),
                format!("`{u}` is not an http:// or https:// URL"),
            )
            .help("e.g. \"http://127.0.0.1:9000/check\""),
        );
    }
}

/// TLS settings for a policy's service: only with an `https://` URL, and their files load.
fn check_fetch_tls(
    url: &str,
    tls: Option<&crate::schema::UpstreamTls>,
    at: &KeyPath,
    out: &mut Vec<Diagnostic>,
) {
    let Some(tls) = tls else { return };
    if !url.starts_with("https://") {
        out.push(
            Diagnostic::at(
                at.clone(),
                format!("`{url}` is not https://: TLS settings do not apply"),
            )
            .help("use an https:// URL, or remove the TLS settings"),
        );
    }
    super::listeners::check_tls_files(tls, at, out);
}

pub(crate) fn check_headers(names: &[String], at: &KeyPath, out: &mut Vec<Diagnostic>) {
    for (i, h) in names.iter().enumerate() {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.index(i),
                format!("`{h}` is not a valid header name"),
            ));
        }
    }
}

fn check_header_opt(name: Option<&str>, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    if let Some(h) = name {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            out.push(Diagnostic::at(
                at.clone(),
                format!("`{h}` is not a valid header name"),
            ));
        }
    }
}
